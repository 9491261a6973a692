package kafka_test

// TestRecordsSurviveLeaderMoves checks that no record is lost, duplicated or
// reordered while partition leaders move: a franz-go producer (its defaults:
// snappy, acks=all, idempotent) writes a JSON event to every partition every
// few milliseconds while the leaders of a 3-broker kfake move dozens of times
// (ShufflePartitionLeaders, MoveTopicPartition, and a broker removed and
// replaced by a new one). Meanwhile sessions read through the standalone
// server: fetch loops as APISIX clients run them (cmd_kafka_fetch at the last
// offset + 1, or at next_offset when a reply carries it) and subscriptions,
// some started before the first record and living through the run (one
// fetch loop and one subscriber among them stop reading for a while, so that
// they fall behind the shared readers' small window and read Kafka on their
// own), others started mid-run from the earliest offset and from an offset
// inside the log. Afterwards every reader's records are checked against the log read
// directly with franz-go, and the log against what the producer was
// acknowledged: every offset exactly once, in order, with its value.
//
// By default one short run (a few seconds) takes part in `go test`. The long
// mode is for local use; it also deletes and creates again a second topic
// among the leader moves, read all along (see churn_test.go):
//
//	PUBSUB_STRESS=long            seeds 1..N, a minute each, on 4 partitions
//	PUBSUB_STRESS_SEEDS=N         N in the long mode (default 10)
//	PUBSUB_STRESS_DURATION=D      how long each seed produces (default 4s, long 60s)
//	PUBSUB_STRESS_SEED=S          run seed S only (the seed picks the moves; the
//	                              failure report names it)
//
// for example
//
//	PUBSUB_STRESS=long PUBSUB_STRESS_SEEDS=20 go test -race -count=1 -timeout 2h \
//	    -run TestRecordsSurviveLeaderMoves ./kafka/

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// stressPlan is what one stress run does.
type stressPlan struct {
	partitions int32
	produce    time.Duration // how long records are produced
	everyWrite time.Duration // the pause between two records of a partition
	everyMove  time.Duration // the pause between two leader moves
	catchUp    time.Duration // how long readers may take to reach the end afterwards
	churn      bool          // delete and create again a second topic meanwhile
	seeds      []int64
}

// stressPlanFromEnv reads the mode and knobs documented above.
func stressPlanFromEnv(t *testing.T) stressPlan {
	plan := stressPlan{partitions: 3, produce: 4 * time.Second, everyWrite: 4 * time.Millisecond,
		everyMove: 100 * time.Millisecond, catchUp: 15 * time.Second, seeds: []int64{time.Now().UnixNano() % 1e6}}
	if os.Getenv("PUBSUB_STRESS") == "long" {
		plan.partitions, plan.produce, plan.catchUp, plan.churn = 4, time.Minute, time.Minute, true
		n := 10
		if s := os.Getenv("PUBSUB_STRESS_SEEDS"); s != "" {
			var err error
			if n, err = strconv.Atoi(s); err != nil || n < 1 {
				t.Fatalf("PUBSUB_STRESS_SEEDS=%q: want a positive number", s)
			}
		}
		plan.seeds = plan.seeds[:0]
		for i := range n {
			plan.seeds = append(plan.seeds, int64(i+1))
		}
	}
	if s := os.Getenv("PUBSUB_STRESS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("PUBSUB_STRESS_DURATION=%q: want a positive duration", s)
		}
		plan.produce = d
	}
	if s := os.Getenv("PUBSUB_STRESS_SEED"); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("PUBSUB_STRESS_SEED=%q: want a number", s)
		}
		plan.seeds = []int64{seed}
	}
	return plan
}

func TestRecordsSurviveLeaderMoves(t *testing.T) {
	plan := stressPlanFromEnv(t)
	for _, seed := range plan.seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runLeaderMoves(t, plan, seed) })
	}
}

const stressTopic = "moves"

// stream is what one reader received of one partition, from start on.
type stream struct {
	who       string
	partition int32
	start     int64

	mu       sync.Mutex
	got      []*pb.KafkaMessage
	next     int64 // the offset after the last record received
	errors   int
	lastErr  string
	finalErr string // why the reader stopped early
}

func newStream(who string, partition int32, start int64) *stream {
	return &stream{who: fmt.Sprintf("%s (partition %d from %d)", who, partition, start), partition: partition, start: start, next: start}
}

func (s *stream) add(msgs []*pb.KafkaMessage, next int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, msgs...)
	s.next = next
}

func (s *stream) failed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errors++
	s.lastErr = err.Error()
}

// stressRun is the state of one seed's run.
type stressRun struct {
	t     *testing.T
	plan  stressPlan
	kafka *kfake.Cluster
	srv   *testkit.Server

	mu      sync.Mutex
	streams []*stream
	acked   []map[int64]string // per partition: offset -> acknowledged value

	ends     []int64       // the log end of each partition once production stopped
	finished chan struct{} // closed when ends is set
	readers  sync.WaitGroup

	pausing atomic.Bool   // paused readers stop reading
	resume  chan struct{} // closed when paused readers go on
}

// maxPause bounds how long paused readers stop reading, well within the
// session's push_stall_timeout (10 s), so that a paused subscriber is slow,
// not closed.
const maxPause = 5 * time.Second

// stressWindowBytes is the shared readers' window in the stress run: small,
// so that a paused reader falls behind it.
const stressWindowBytes = 64 << 10

// holdIfPaused blocks a paused reader while the pause lasts.
func (run *stressRun) holdIfPaused(ctx context.Context) {
	if run.pausing.Load() {
		select {
		case <-run.resume:
		case <-ctx.Done():
		}
	}
}

func runLeaderMoves(t *testing.T, plan stressPlan, seed int64) {
	k := testkit.Kafka(t)
	if err := k.CreateTopic(stressTopic, plan.partitions, nil); err != nil {
		t.Fatal(err)
	}
	run := &stressRun{t: t, plan: plan, kafka: k, finished: make(chan struct{}), resume: make(chan struct{}),
		acked: make([]map[int64]string, plan.partitions)}
	for p := range run.acked {
		run.acked[p] = make(map[int64]string)
	}
	run.srv = testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), fmt.Sprintf("    window_bytes: %d\n", stressWindowBytes), ""), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Old sessions: they start before the first record and live through
	// the run.
	earliest := func() *pb.CmdKafkaSubscribe {
		return &pb.CmdKafkaSubscribe{Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}}
	}
	run.fetchLoops(ctx, "old fetch loop", false, func(int32) int64 { return 0 })
	run.fetchLoops(ctx, "old paused fetch loop", true, func(int32) int64 { return 0 })
	run.subscribe(ctx, "old subscription", false, earliest())
	run.subscribe(ctx, "old paused subscription", true, earliest())

	moves := make(chan string, 1)
	produced := make(chan int, 1)
	stopMoves := make(chan struct{})
	go func() { moves <- run.moveLeaders(rand.New(rand.NewSource(seed)), stopMoves) }()
	go func() { produced <- run.produce(ctx) }()
	var churning *churn
	stopChurn := make(chan struct{})
	if plan.churn {
		churning = run.startChurn(ctx, stopChurn)
	}

	// New sessions, started mid-run, while the paused readers stop.
	third := time.NewTimer(plan.produce / 3)
	<-third.C
	run.pausing.Store(true)
	time.AfterFunc(min(plan.produce/3, maxPause), func() { close(run.resume) })
	lister := run.dial(ctx)
	run.fetchLoops(ctx, "new fetch loop from earliest", false, func(p int32) int64 { return run.listOffset(ctx, lister, p, -2) })
	run.subscribe(ctx, "new subscription from an offset", false, &pb.CmdKafkaSubscribe{Offsets: run.midOffsets(ctx)})
	third.Reset(plan.produce / 3)
	<-third.C
	mid := run.midOffsets(ctx)
	run.fetchLoops(ctx, "new fetch loop from an offset", false, func(p int32) int64 { return mid[p] })
	run.subscribe(ctx, "new subscription from earliest", false, earliest())
	records := <-produced
	close(stopChurn)
	close(stopMoves)
	movesDone := <-moves
	run.ends = run.endOffsets(ctx)
	close(run.finished)
	readersDone := make(chan struct{})
	go func() { run.readers.Wait(); close(readersDone) }()
	select {
	case <-readersDone:
	case <-time.After(plan.catchUp):
		t.Errorf("seed %d: readers did not reach the end of the log within %v of the last record", seed, plan.catchUp)
		run.reportStuck()
		cancel()
		<-readersDone
	}
	t.Logf("seed %d: %d records acknowledged on %d partitions in %v (log ends %v); %s", seed, records, plan.partitions, plan.produce, run.ends, movesDone)
	run.check(seed)
	if churning != nil {
		var problems problemList
		t.Logf("seed %d: %s", seed, churning.check(&problems))
		problems.report(t)
	}
}

// produce writes a JSON event to every partition every plan.everyWrite for
// plan.produce and returns how many were acknowledged.
func (run *stressRun) produce(ctx context.Context) int {
	t := run.t
	cl, err := kgo.NewClient(kgo.SeedBrokers(run.kafka.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Error(err)
		return 0
	}
	defer cl.Close()
	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		failed  int
		lastErr error
	)
	stop := time.Now().Add(run.plan.produce)
	for p := range run.plan.partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(run.plan.everyWrite)
			defer tick.Stop()
			for i := 0; time.Now().Before(stop); i++ {
				rec := &kgo.Record{Topic: stressTopic, Partition: p, Value: jsonEvent(fmt.Sprintf("p%d", p), i)}
				cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
					if err != nil {
						errMu.Lock()
						failed, lastErr = failed+1, err
						errMu.Unlock()
						return
					}
					run.mu.Lock()
					run.acked[p][r.Offset] = string(r.Value)
					run.mu.Unlock()
				})
				<-tick.C
			}
		}()
	}
	wg.Wait()
	if err := cl.Flush(ctx); err != nil {
		t.Errorf("producer flush: %v", err)
	}
	if failed > 0 {
		t.Logf("%d records were not acknowledged (last error: %v); they are not expected", failed, lastErr)
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	n := 0
	for _, m := range run.acked {
		n += len(m)
	}
	return n
}

// moveLeaders moves partition leaders every plan.everyMove until stop, with
// choices drawn from rng, and describes what it did. Now and then it removes
// a broker and, at the next move, adds a new one in its place: kfake keeps
// serving the connections of a removed broker (as a broker that lost its
// leadership), so the new one gets a new node ID and port, as a replaced
// machine would. Node 0, the first seed broker, stays.
func (run *stressRun) moveLeaders(rng *rand.Rand, stop <-chan struct{}) string {
	t, k := run.t, run.kafka
	live := []int32{0, 1, 2}
	replace := false // a broker was removed: add one at the next move
	var shuffles, moves, replaced int
	tick := time.NewTicker(run.plan.everyMove)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			if replace {
				run.addNode(&live)
			}
			return fmt.Sprintf("%d leader moves: %d shuffles, %d partition moves, %d brokers replaced (brokers now %v)", shuffles+moves+replaced, shuffles, moves, replaced, live)
		case <-tick.C:
		}
		if replace {
			run.addNode(&live)
			replace = false
			continue
		}
		switch n := rng.Intn(20); {
		case n < 9:
			k.ShufflePartitionLeaders()
			shuffles++
		case n < 17:
			p := rng.Int31n(run.plan.partitions)
			leader, to := k.LeaderFor(stressTopic, p), live[rng.Intn(len(live))]
			for to == leader {
				to = live[rng.Intn(len(live))]
			}
			if err := k.MoveTopicPartition(stressTopic, p, to); err != nil {
				t.Errorf("moving partition %d to node %d: %v", p, to, err)
			}
			moves++
		default:
			i := 1 + rng.Intn(len(live)-1)
			if err := k.RemoveNode(live[i]); err != nil {
				t.Errorf("removing node %d: %v", live[i], err)
				continue
			}
			live = append(live[:i], live[i+1:]...)
			replace = true
			replaced++
		}
	}
}

// addNode adds a broker with a new node ID and port to the cluster.
func (run *stressRun) addNode(live *[]int32) {
	node, _, err := run.kafka.AddNode(-1, 0)
	if err != nil {
		run.t.Errorf("adding a broker: %v", err)
		return
	}
	*live = append(*live, node)
}

// reportStuck names the readers that have not reached the log end.
func (run *stressRun) reportStuck() {
	run.mu.Lock()
	defer run.mu.Unlock()
	for _, s := range run.streams {
		s.mu.Lock()
		if end := run.ends[s.partition]; s.next < end {
			run.t.Errorf("%s is stuck at offset %d of %d after %d records (%d failed requests, the last: %q; ended early: %q)", s.who, s.next, end, len(s.got), s.errors, s.lastErr, s.finalErr)
		}
		s.mu.Unlock()
	}
}

// dial opens a session that lives until the run ends.
func (run *stressRun) dial(ctx context.Context) *client.Client {
	c := run.srv.Dial(run.t, "kafka")
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	return c
}

// listOffset returns an offset of partition p (-2 earliest, -1 latest) as
// the gateway reports it to c, retrying while leaders move.
func (run *stressRun) listOffset(ctx context.Context, c *client.Client, p int32, timestamp int64) int64 {
	for {
		off, err := c.ListOffset(ctx, stressTopic, p, timestamp)
		if err == nil || ctx.Err() != nil {
			return off
		}
		run.t.Logf("list offset %d of partition %d: %v (retrying)", timestamp, p, err)
		pause(ctx)
	}
}

// midOffsets returns, per partition, an offset in the middle of what is
// written so far.
func (run *stressRun) midOffsets(ctx context.Context) map[int32]int64 {
	c := run.dial(ctx)
	mid := make(map[int32]int64)
	for p := range run.plan.partitions {
		mid[p] = run.listOffset(ctx, c, p, -1) / 2
	}
	return mid
}

// endOffsets returns the log end of every partition, read directly.
func (run *stressRun) endOffsets(ctx context.Context) []int64 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(run.kafka.ListenAddrs()...))
	if err != nil {
		run.t.Fatal(err)
	}
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).ListEndOffsets(ctx, stressTopic)
	if err != nil {
		run.t.Fatalf("list end offsets: %v", err)
	}
	ends := make([]int64, run.plan.partitions)
	for p := range ends {
		o, ok := offsets.Lookup(stressTopic, int32(p))
		if !ok || o.Err != nil {
			run.t.Fatalf("end offset of partition %d: %v", p, o.Err)
		}
		ends[p] = o.Offset
	}
	return ends
}

// caughtUp reports whether production stopped and next is the end of
// partition p.
func (run *stressRun) caughtUp(p int32, next int64) bool {
	select {
	case <-run.finished:
		return next >= run.ends[p]
	default:
		return false
	}
}

// fetchLoops starts, in one new session, a fetch loop per partition from
// the offset start returns, each reading until it reaches the log end
// (paused ones stop during the pause).
func (run *stressRun) fetchLoops(ctx context.Context, who string, paused bool, start func(int32) int64) {
	c := run.dial(ctx)
	for p := range run.plan.partitions {
		s := newStream(who, p, start(p))
		run.track(s)
		run.readers.Add(1)
		go func() {
			defer run.readers.Done()
			for off := s.start; !run.caughtUp(p, off) && ctx.Err() == nil; {
				if paused {
					run.holdIfPaused(ctx)
				}
				r, err := fetchReply(ctx, c, stressTopic, p, off)
				if err != nil {
					s.failed(err) // an APISIX client retries
					pause(ctx)
					continue
				}
				msgs := r.GetMessages()
				switch {
				case r.GetNextOffset() != 0:
					off = r.GetNextOffset()
				case len(msgs) > 0:
					off = msgs[len(msgs)-1].GetOffset() + 1
				}
				s.add(msgs, off)
			}
		}()
	}
}

// subscribe starts, in one new session, a subscription to every partition
// and collects its pushes until each partition reaches the log end (paused
// ones stop reading during the pause).
func (run *stressRun) subscribe(ctx context.Context, who string, paused bool, cmd *pb.CmdKafkaSubscribe) {
	c := run.dial(ctx)
	cmd.Topic = stressTopic
	sub, err := c.Subscribe(ctx, cmd)
	for err != nil && pause(ctx) {
		run.t.Logf("%s: subscribe: %v (retrying)", who, err)
		sub, err = c.Subscribe(ctx, cmd)
	}
	if err != nil {
		return
	}
	streams := make(map[int32]*stream)
	for _, po := range sub.Starts {
		s := newStream(who, po.GetPartition(), po.GetOffset())
		streams[po.GetPartition()] = s
		run.track(s)
	}
	done := func() bool {
		for p, s := range streams {
			if s.finalErr == "" && !run.caughtUp(p, s.next) {
				return false
			}
		}
		return true
	}
	run.readers.Add(1)
	go func() {
		defer run.readers.Done()
		finished := run.finished
		for !done() {
			if paused {
				run.holdIfPaused(ctx)
			}
			select {
			case resp, ok := <-sub.C():
				if !ok {
					for _, s := range streams {
						s.finalErr = fmt.Sprintf("the session ended: %v", c.Err())
					}
					return
				}
				if e := resp.GetErrorResp(); e != nil {
					for _, s := range streams { // the message names the partition
						if s.finalErr == "" && containsPartition(e.GetMessage(), s.partition) {
							s.finalErr = e.GetMessage()
						}
					}
					continue
				}
				fr := resp.GetKafkaFetchResp()
				s := streams[fr.GetPartition()]
				if s == nil {
					run.t.Errorf("%s: push for partition %d, which it did not subscribe to", who, fr.GetPartition())
					continue
				}
				msgs, next := fr.GetMessages(), s.next
				if len(msgs) > 0 {
					next = msgs[len(msgs)-1].GetOffset() + 1
				}
				if n := fr.GetNextOffset(); n != 0 {
					next = n
				}
				s.add(msgs, next)
			case <-finished:
				finished = nil // from now on done() can become true
			case <-ctx.Done():
				return
			}
		}
	}()
}

// containsPartition reports whether a subscription error names partition p.
func containsPartition(msg string, p int32) bool {
	return strings.Contains(msg, fmt.Sprintf("partition: %d,", p))
}

// retryPause is the pause before a reader repeats a failed request.
const retryPause = 20 * time.Millisecond

// pause waits retryPause; it reports whether ctx is still live.
func pause(ctx context.Context) bool {
	t := time.NewTimer(retryPause)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (run *stressRun) track(s *stream) {
	run.mu.Lock()
	defer run.mu.Unlock()
	run.streams = append(run.streams, s)
}

// check compares the log with what the producer was acknowledged, and every
// reader's records with the log.
func (run *stressRun) check(seed int64) {
	t := run.t
	var problems problemList
	logs := make([]*partitionLog, run.plan.partitions)
	for p := range logs {
		logs[p] = readLog(t, run.kafka.ListenAddrs(), stressTopic, int32(p), run.ends[p]-1)
		byOffset := make(map[int64]*kgo.Record, len(logs[p].records))
		for _, r := range logs[p].records {
			byOffset[r.Offset] = r
		}
		for off, value := range run.acked[p] {
			if r := byOffset[off]; r == nil || string(r.Value) != value {
				problems.add(fmt.Sprintf("partition %d: the log lacks acknowledged offset %d (value %q)", p, off, clip([]byte(value))))
			}
		}
	}
	for _, s := range run.streams {
		s.mu.Lock()
		if s.errors > 0 {
			t.Logf("%s: %d failed requests, the last: %s", s.who, s.errors, s.lastErr)
		}
		if s.finalErr != "" {
			problems.add(fmt.Sprintf("%s ended early: %s", s.who, s.finalErr))
		}
		found := logs[s.partition].checkStream(s.who, s.start, s.got, true)
		if len(found) > 0 {
			t.Logf("%s: %d records received, %d problems", s.who, len(s.got), len(found))
		}
		problems.add(found...)
		s.mu.Unlock()
	}
	if len(problems.items) > 0 {
		t.Logf("seed %d failed; replay its moves with PUBSUB_STRESS_SEED=%d", seed, seed)
	}
	problems.report(t)
}
