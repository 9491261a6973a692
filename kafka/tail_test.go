package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// requestCounter counts the requests of some kinds the gateway's franz-go
// clients send.
type requestCounter struct {
	n [int(kmsg.MaxKey) + 1]atomic.Int64
}

func (c *requestCounter) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err == nil && key >= 0 && int(key) < len(c.n) {
		c.n[key].Add(1)
	}
}

func (c *requestCounter) load(key kmsg.Key) int64 { return c.n[key].Load() }

// Sessions polling the end of the log with the APISIX fetch loop wait on the
// partition's shared stream and read what it brings from the record cache:
// neither the broker fetches nor the cache's checks grow with the number of
// polling sessions.
func TestPollingTheEndOfTheLogSharesTheBrokerWork(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	var reqs requestCounter
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "", ""), nil,
		kafka.ClientOptions(kgo.WithHooks(&reqs)))
	const sessions, batches, perBatch = 20, 20, 10
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	started := make(chan struct{}, sessions)
	errs := make(chan error, sessions)
	for range sessions {
		c := srv.Dial(t, "kafka")
		wg.Add(1)
		go func() {
			defer wg.Done()
			next, first := int64(0), true
			for next < batches*perBatch {
				msgs, err := c.Fetch(ctx, "t", 0, next)
				if err != nil {
					errs <- err
					return
				}
				if first {
					first = false
					started <- struct{}{}
				}
				for _, m := range msgs {
					if m.GetOffset() != next {
						errs <- fmt.Errorf("offset %d after %d", m.GetOffset(), next-1)
						return
					}
					next++
				}
			}
		}()
	}
	for range sessions {
		<-started // every session has polled the empty log once
	}
	fetchesBefore, checksBefore := reqs.load(kmsg.Fetch), reqs.load(kmsg.ListOffsets)
	for b := range batches {
		recs := make([]testkit.Record, perBatch)
		for i := range recs {
			recs[i] = testkit.Record{Value: fmt.Sprintf("b%d-%d", b, i)}
		}
		testkit.Produce(t, k.ListenAddrs(), "t", 0, recs)
		time.Sleep(20 * time.Millisecond) // paces production; nothing waits on it
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fetches := reqs.load(kmsg.Fetch) - fetchesBefore
	checks := reqs.load(kmsg.ListOffsets) - checksBefore
	// Each session asking the broker on every poll would make at least
	// sessions*batches of each; shared, they grow with the batches and
	// the time, not with the sessions.
	if fetches > 5*batches || checks > 5*batches {
		t.Fatalf("%d broker fetches and %d list-offsets requests for %d polling sessions and %d batches: the tail is not shared",
			fetches, checks, sessions, batches)
	}
	t.Logf("%d broker fetches and %d list-offsets requests delivered %d records to each of %d polling sessions",
		fetches, checks, batches*perBatch, sessions)
}

// A broker answer's first batch is decoded whole even when the fetch starts
// inside it; the cache keeps all of it, so sessions a little behind the
// first one (the usual drift of readers of one partition) read that batch
// without asking Kafka or decoding it again.
func TestSessionsBehindInOneBatchShareItsDecoding(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "b"))
	brokers := k.ListenAddrs()
	acked := newBatchProducer(t, brokers, "b", 0, kgo.SnappyCompression(), "drift").batch(200)
	var reqs requestCounter
	srv := testkit.StartServer(t, testkit.ClusterYAML(brokers, fmt.Sprintf("    fetch_max_bytes: %d\n", exactFetchMaxBytes), ""), nil,
		kafka.ClientOptions(kgo.WithHooks(&reqs)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ahead := srv.Dial(t, "kafka")
	if msgs, err := ahead.Fetch(ctx, "b", 0, 150); err != nil || len(msgs) == 0 || msgs[0].GetOffset() != 150 {
		t.Fatalf("fetch at 150: %d records, %v", len(msgs), err)
	}
	before := reqs.load(kmsg.Fetch)
	behind := srv.Dial(t, "kafka")
	for next := int64(20); next < 150; {
		msgs, err := behind.Fetch(ctx, "b", 0, next)
		if err != nil || len(msgs) == 0 {
			t.Fatalf("fetch at %d: %d records, %v", next, len(msgs), err)
		}
		for _, m := range msgs {
			if m.GetOffset() != next || string(m.GetValue()) != string(acked[next].value) {
				t.Fatalf("record at %d: offset %d, value %q; want %q", next, m.GetOffset(), m.GetValue(), acked[next].value)
			}
			next++
		}
	}
	if used := reqs.load(kmsg.Fetch) - before; used != 0 {
		t.Fatalf("%d broker fetches for offsets of a batch the cache decoded for a session ahead", used)
	}
}

// "Latest" is the last stable offset, as a read_committed Kafka consumer
// sees it: a transaction open when a client asks for it is delivered once
// it commits, to a subscription at latest and to a fetch loop started at
// the listed offset.
func TestLatestDoesNotSkipAnOpenTransaction(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "lso"))
	brokers := k.ListenAddrs()
	plain := newBatchProducer(t, brokers, "lso", 0, kgo.SnappyCompression(), "plain")
	txn := newBatchProducer(t, brokers, "lso", 0, kgo.SnappyCompression(), "txn", kgo.TransactionalID("lso-txn"))
	plain.batch(2)
	if err := txn.cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	open := txn.batch(3)
	srv := testkit.StartServer(t, testkit.ClusterYAML(brokers, "", ""), nil)
	c := srv.Dial(t, "kafka")
	latest, err := c.ListOffset(ctx(t), "lso", 0, -1)
	if err != nil || latest != open[0].offset {
		t.Fatalf("latest offset %d, %v; want %d, where the open transaction begins", latest, err, open[0].offset)
	}
	sub, err := c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "lso", Partitions: []int32{0}})
	if err != nil {
		t.Fatal(err)
	}
	if err := txn.cl.EndTransaction(ctx(t), kgo.TryCommit); err != nil {
		t.Fatalf("commit: %v", err)
	}
	got := collect(t, sub, 0, open[0].offset, len(open))
	for i, m := range got {
		if string(m.GetValue()) != string(open[i].value) {
			t.Fatalf("pushed record %d: %s, want %s", m.GetOffset(), m.GetValue(), open[i].value)
		}
	}
	var fetched []*pb.KafkaMessage
	for next := latest; len(fetched) < len(open); {
		msgs, err := c.Fetch(ctx(t), "lso", 0, next)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			fetched = append(fetched, m)
			next = m.GetOffset() + 1
		}
	}
	if fetched[0].GetOffset() != open[0].offset || len(fetched) != len(open) {
		t.Fatalf("a fetch loop from the listed latest offset read %d records from %d", len(fetched), fetched[0].GetOffset())
	}
}
