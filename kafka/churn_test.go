package kafka_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/client"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// The long stress mode also deletes and creates again a second topic,
// churnTopic, among the leader moves (ShufflePartitionLeaders and broker
// replacements move its leaders too). Each incarnation (generation) gets
// records whose values name it, and sessions read it all along: fetch loops
// that follow the log as a client does (after an error they start over from
// offset 0) and subscriptions that subscribe again from earliest when they
// are told the topic is gone. Records of a topic deleted and created again
// look like records: what gives a stale cache away is their generation. So
// every record received must be one the producer was acknowledged at that
// offset in that generation; Partition 0 is read all along, so that its shared
// reader lives through every deletion; partition 1 only by a visitor that
// subscribes for a while and leaves, so that its records stay cached with no
// reader when the topic is deleted. a reader never receives an older generation
// than one it received before, nor one older than the generation that was
// current when it (re)started; and within a generation its offsets rise.

const (
	churnTopic      = "churn"
	churnPartitions = 2
	// churnEvery is how long each generation of churnTopic lives.
	churnEvery = 700 * time.Millisecond
)

// churn is the state of the recreated topic in one stress run.
type churn struct {
	run *stressRun
	gen atomic.Int64 // the current generation, once created

	mu      sync.Mutex
	acked   map[int64]map[int32]map[int64]string // generation -> partition -> offset -> value
	streams []*churnStream
	readers sync.WaitGroup
}

// churnStream is what one reader received of churnTopic.
type churnStream struct {
	who string

	mu       sync.Mutex
	received []churnRecord
	restarts int
}

// churnRecord is one record a reader received, with the generation that
// was current when the reader last (re)started and how many times it had
// started over then.
type churnRecord struct {
	partition int32
	offset    int64
	value     string
	minGen    int64
	run       int
}

func (s *churnStream) add(partition int32, minGen int64, msgs []*pb.KafkaMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.received = append(s.received, churnRecord{partition, m.GetOffset(), string(m.GetValue()), minGen, s.restarts})
	}
}

// startChurn recreates churnTopic every churnEvery until ctx ends or stop is
// closed, producing to each generation, and starts its readers.
func (run *stressRun) startChurn(ctx context.Context, stop <-chan struct{}) *churn {
	ch := &churn{run: run, acked: make(map[int64]map[int32]map[int64]string)}
	ch.recreate(1)
	for i := range 2 {
		ch.fetchLoop(ctx, stop, fmt.Sprintf("churn fetch loop %d", i))
	}
	earliest := func() *pb.CmdKafkaSubscribe {
		return &pb.CmdKafkaSubscribe{Partitions: []int32{0}, Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}}
	}
	latest := func() *pb.CmdKafkaSubscribe {
		return &pb.CmdKafkaSubscribe{Partitions: []int32{0}, Start: &pb.CmdKafkaSubscribe_Latest{Latest: true}}
	}
	ch.subscription(ctx, stop, "churn subscription from earliest", earliest, nil)
	ch.subscription(ctx, stop, "churn subscription from latest", latest, nil)
	visits := 0
	ch.subscription(ctx, stop, "churn visitor of partition 1", func() *pb.CmdKafkaSubscribe {
		visits++
		cmd := earliest()
		if visits%2 == 0 {
			cmd = latest()
		}
		cmd.Partitions = []int32{1}
		return cmd
	}, func() <-chan time.Time { return time.After(churnEvery / 3) })
	ch.readers.Add(1)
	go func() {
		defer ch.readers.Done()
		for gen := int64(1); ; gen++ {
			ch.produce(ctx, gen, stop)
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			ch.recreate(gen + 1)
		}
	}()
	return ch
}

// recreate deletes churnTopic (from the second generation on) and creates
// generation gen.
func (ch *churn) recreate(gen int64) {
	k := ch.run.kafka
	if gen > 1 {
		if err := k.DeleteTopic(churnTopic); err != nil {
			ch.run.t.Errorf("deleting %s: %v", churnTopic, err)
		}
	}
	if err := k.CreateTopic(churnTopic, churnPartitions, nil); err != nil {
		ch.run.t.Errorf("creating %s generation %d: %v", churnTopic, gen, err)
	}
	ch.mu.Lock()
	ch.acked[gen] = make(map[int32]map[int64]string)
	for p := range int32(churnPartitions) {
		ch.acked[gen][p] = make(map[int64]string)
	}
	ch.mu.Unlock()
	ch.gen.Store(gen)
}

// produce writes records of generation gen for churnEvery (or until stop),
// with a producer of its own: franz-go does not write to a topic created
// again under a name it wrote to.
func (ch *churn) produce(ctx context.Context, gen int64, stop <-chan struct{}) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(ch.run.kafka.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		ch.run.t.Error(err)
		return
	}
	defer cl.Close()
	end := time.After(churnEvery)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-end:
			cl.Flush(ctx)
			return
		case <-stop:
			cl.Flush(ctx)
			return
		case <-tick.C:
		}
		p := int32(i % churnPartitions)
		rec := &kgo.Record{Topic: churnTopic, Partition: p, Value: fmt.Appendf(nil, "g%d-p%d-%d", gen, p, i)}
		cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
			if err != nil {
				return // not acknowledged: not expected
			}
			ch.mu.Lock()
			ch.acked[gen][r.Partition][r.Offset] = string(r.Value)
			ch.mu.Unlock()
		})
	}
}

// fetchLoop reads partition 0 of churnTopic as a client does, in one
// session, until stop: from the offset after the last record, and from 0
// again after an error (the topic was deleted, or has fewer records now).
func (ch *churn) fetchLoop(ctx context.Context, stop <-chan struct{}, who string) {
	c := ch.run.dial(ctx)
	s := &churnStream{who: who}
	ch.track(s)
	for _, p := range []int32{0} {
		ch.readers.Add(1)
		go func() {
			defer ch.readers.Done()
			off, minGen := int64(0), ch.gen.Load()
			for !stopped(ctx, stop) {
				r, err := fetchReply(ctx, c, churnTopic, p, off)
				if err != nil {
					off, minGen = 0, ch.gen.Load()
					s.mu.Lock()
					s.restarts++
					s.mu.Unlock()
					pause(ctx)
					continue
				}
				msgs := r.GetMessages()
				s.add(p, minGen, msgs)
				switch {
				case r.GetNextOffset() != 0:
					off = r.GetNextOffset()
				case len(msgs) > 0:
					off = msgs[len(msgs)-1].GetOffset() + 1
				}
			}
		}()
	}
}

// subscription subscribes to churnTopic in one session until stop, and
// again (with cmd) whenever it is told a partition cannot go on, or (a
// visitor) when the time visit returns is up.
func (ch *churn) subscription(ctx context.Context, stop <-chan struct{}, who string, cmd func() *pb.CmdKafkaSubscribe, visit func() <-chan time.Time) {
	c := ch.run.dial(ctx)
	s := &churnStream{who: who}
	ch.track(s)
	ch.readers.Add(1)
	go func() {
		defer ch.readers.Done()
		for !stopped(ctx, stop) {
			minGen := ch.gen.Load()
			req := cmd()
			req.Topic = churnTopic
			sub, err := c.Subscribe(ctx, req)
			if err != nil {
				pause(ctx)
				continue
			}
			var leave <-chan time.Time
			if visit != nil {
				leave = visit()
			}
			ch.follow(ctx, stop, leave, s, sub, minGen)
			sub.Unsubscribe(ctx)
			s.mu.Lock()
			s.restarts++
			s.mu.Unlock()
		}
	}()
}

// follow records the pushes of sub until stop, leave or an error_resp.
func (ch *churn) follow(ctx context.Context, stop <-chan struct{}, leave <-chan time.Time, s *churnStream, sub *client.Subscription, minGen int64) {
	for {
		select {
		case resp, ok := <-sub.C():
			if !ok || resp.GetErrorResp() != nil {
				return
			}
			if fr := resp.GetKafkaFetchResp(); fr != nil {
				s.add(fr.GetPartition(), minGen, fr.GetMessages())
			}
		case <-leave:
			return
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (ch *churn) track(s *churnStream) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.streams = append(ch.streams, s)
}

// stopped reports whether ctx ended or stop is closed.
func stopped(ctx context.Context, stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// check waits for the readers and reports every record that was not the
// producer's in its generation at its offset, every step back to an older
// generation, and every offset that did not rise within a generation.
func (ch *churn) check(problems *problemList) string {
	ch.readers.Wait()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	var summary []string
	for _, s := range ch.streams {
		s.mu.Lock()
		lastGen := map[int32]int64{}
		lastOffset := map[int32]int64{}
		run := 0
		for _, r := range s.received {
			if r.run != run { // it started over: offsets begin again
				run, lastOffset = r.run, map[int32]int64{}
			}
			var gen int64
			var p int32
			var i int
			if _, err := fmt.Sscanf(r.value, "g%d-p%d-%d", &gen, &p, &i); err != nil || p != r.partition {
				problems.add(fmt.Sprintf("%s: partition %d offset %d has a record %q that was never written there", s.who, r.partition, r.offset, r.value))
				continue
			}
			if want := ch.acked[gen][p][r.offset]; want != r.value {
				problems.add(fmt.Sprintf("%s: partition %d offset %d: got %q, generation %d holds %q there", s.who, p, r.offset, r.value, gen, want))
			}
			if gen < r.minGen {
				problems.add(fmt.Sprintf("%s: partition %d offset %d: a record of generation %d after it (re)started in generation %d", s.who, p, r.offset, gen, r.minGen))
			}
			switch last, seen := lastOffset[p]; {
			case gen < lastGen[p]:
				problems.add(fmt.Sprintf("%s: partition %d offset %d: generation %d after generation %d", s.who, p, r.offset, gen, lastGen[p]))
				continue
			case gen == lastGen[p] && seen && r.offset <= last:
				problems.add(fmt.Sprintf("%s: partition %d: offset %d after %d in generation %d", s.who, p, r.offset, last, gen))
			}
			lastGen[p], lastOffset[p] = gen, r.offset
		}
		summary = append(summary, fmt.Sprintf("%s: %d records, %d restarts", s.who, len(s.received), s.restarts))
		s.mu.Unlock()
	}
	return fmt.Sprintf("%s recreated %d times; %s", churnTopic, ch.gen.Load()-1, strings.Join(summary, "; "))
}
