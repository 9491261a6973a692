package kafka_test

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/internal/wstest"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/metrics"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// rawSubscribe opens a session on a bare WebSocket (no client goroutine)
// subscribed to partition 0 of topic from its end, and reads the ack.
func rawSubscribe(t *testing.T, url, topic string) net.Conn {
	t.Helper()
	conn, _, _, err := ws.Dial(ctx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req, _ := proto.Marshal(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdKafkaSubscribe{
		CmdKafkaSubscribe: &pb.CmdKafkaSubscribe{Topic: topic, Partitions: []int32{0}},
	}})
	if err := ws.WriteFrame(conn, ws.MaskFrame(ws.NewBinaryFrame(req))); err != nil {
		t.Fatal(err)
	}
	if resp := readResp(t, conn); resp.GetKafkaSubscribeResp() == nil {
		t.Fatalf("got %v, want the subscription's ack", resp)
	}
	return conn
}

func readResp(t *testing.T, conn net.Conn) *pb.PubSubResp {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := wstest.ReadFrame(conn, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	resp := &pb.PubSubResp{}
	if err := proto.Unmarshal(f.Payload, resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

// settledGoroutines waits until the goroutine count holds still for a
// while and returns it.
func settledGoroutines(t *testing.T) int {
	t.Helper()
	last, still := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(10 * time.Second); still < 10 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		if n := runtime.NumGoroutine(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	return last
}

// TestIdleSubscribersHoldNoGoroutine subscribes many sessions to the end of
// one partition: while nothing arrives, neither their sessions nor their
// deliveries hold a goroutine each, and a record still reaches them all.
func TestIdleSubscribersHoldNoGoroutine(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "", ""), nil)
	first := rawSubscribe(t, srv.URL("kafka"), "t")
	base := settledGoroutines(t)
	// One goroutine each (the old design had two) would show far above
	// the slack left for the broker client's own.
	const n, slack = 50, 10
	conns := []net.Conn{first}
	for range n {
		conns = append(conns, rawSubscribe(t, srv.URL("kafka"), "t"))
	}
	if got := settledGoroutines(t); got > base+slack {
		t.Fatalf("%d goroutines with %d more idle subscribers, %d with one", got, n, base)
	}
	testkit.Produce(t, k.ListenAddrs(), "t", 0, testkit.Numbered(1))
	for i, c := range conns {
		if fr := readResp(t, c).GetKafkaFetchResp(); len(fr.GetMessages()) != 1 || fr.GetMessages()[0].GetOffset() != 0 {
			t.Fatalf("subscriber %d got %v, want record 0", i, fr)
		}
	}
	if got := settledGoroutines(t); got > base+slack {
		t.Fatalf("%d goroutines once %d subscribers took a record, %d with one idle", got, n+1, base)
	}
}

// cacheLookups counts the record cache's hits and misses.
type cacheLookups struct {
	metrics.Nop
	hits, misses atomic.Int64
}

func (c *cacheLookups) CacheLookup(hit bool) {
	if hit {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
}

// TestTailPushReadsTheCacheOnce: a subscriber at the end of the log that
// is pushed a record waits for the next one at once, without reading the
// record cache again only to find nothing there.
func TestTailPushReadsTheCacheOnce(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	lookups := &cacheLookups{}
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "", ""), nil, kafka.Metrics(lookups))
	conn := rawSubscribe(t, srv.URL("kafka"), "t")
	const records = 20
	for i := range int64(records) {
		testkit.Produce(t, k.ListenAddrs(), "t", 0, testkit.Numbered(1))
		if fr := readResp(t, conn).GetKafkaFetchResp(); len(fr.GetMessages()) != 1 || fr.GetMessages()[0].GetOffset() != i {
			t.Fatalf("push %d is %v, want record %d", i, fr, i)
		}
	}
	// One cache read per record (the old code read it again after each
	// push, and missed). A record may come while its delivery still reads
	// the one before, or be read from Kafka when it was not cached yet:
	// either costs a miss now and then.
	if hits, misses := lookups.hits.Load(), lookups.misses.Load(); hits+misses > records+records/4 || misses > records/4 {
		t.Fatalf("%d records pushed with %d cache hits and %d misses", records, hits, misses)
	}
}
