package server_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// Large records for the never-reading client: 512 KiB each, produced with
// the franz-go producer's defaults (snappy), values that do not compress.
const (
	bigTopic    = "big"
	bigRecords  = 24
	bigValue    = 512 << 10
	slowFetches = 400
)

// produceBig fills bigTopic/0 with bigRecords records of bigValue bytes.
func produceBig(t testing.TB, k *kfake.Cluster) {
	t.Helper()
	for range bigRecords {
		v := make([]byte, bigValue)
		rand.Read(v)
		testkit.Produce(t, k.ListenAddrs(), bigTopic, 0, []testkit.Record{{Value: string(v)}})
	}
}

// neverReading dials a client that pipelines fetches of consecutive large
// records and never reads a reply. Its socket's receive buffer is small, so
// that the kernel holds little of what the server writes.
func neverReading(t testing.TB, url string, fetches int) {
	t.Helper()
	dialer := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			err = conn.(*net.TCPConn).SetReadBuffer(64 << 10)
		}
		return conn, err
	}}
	conn, _, _, err := dialer.Dial(ctxFor(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		for i := range fetches {
			b, _ := proto.Marshal(&pb.PubSubReq{Sequence: int64(i + 1), Req: &pb.PubSubReq_CmdKafkaFetch{
				CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: bigTopic, Partition: 0, Offset: int64(i % bigRecords)}}})
			if wsutil.WriteClientBinary(conn, b) != nil {
				return
			}
		}
	}()
}

// peakReplyBytes samples the server's reply bytes until stop is closed.
func peakReplyBytes(s *testkit.Server, stop <-chan struct{}) *atomic.Int64 {
	var peak atomic.Int64
	go func() {
		for {
			if n := int64(s.Server.ReplyBytes()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return &peak
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestNeverReadingClientIsBoundedAndANeighbourKeepsWorking: a client that
// pipelines hundreds of fetches of 512 KiB records and reads nothing holds
// at most its max_pending_bytes of replies, the process does not grow when
// it sends more, and a client of another topic of the same cluster is
// served meanwhile.
func TestNeverReadingClientIsBoundedAndANeighbourKeepsWorking(t *testing.T) {
	const pending = 2 << 20
	k := testkit.Kafka(t, kfake.SeedTopics(1, topic, bigTopic))
	produceBig(t, k)
	testkit.Produce(t, k.ListenAddrs(), topic, 0, testkit.Numbered(1000))
	s := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "",
		fmt.Sprintf("session: {max_pending_bytes: %d, write_timeout: 60s}\n", pending)), nil)
	stop := make(chan struct{})
	defer close(stop)
	peak := peakReplyBytes(s, stop)
	neighbour := s.Dial(t, "kafka")

	neverReading(t, s.URL("kafka"), slowFetches/2)
	// The slow session fills its budget and stays there.
	deadline := time.Now().Add(10 * time.Second)
	for s.Server.ReplyBytes() < pending {
		if time.Now().After(deadline) {
			t.Fatalf("the never-reading session holds %d reply bytes, want its budget %d", s.Server.ReplyBytes(), pending)
		}
		time.Sleep(5 * time.Millisecond)
	}
	before := heapInUse()
	neverReading(t, s.URL("kafka"), slowFetches) // a second one, sending more

	for i := range 50 {
		msgs, err := neighbour.Fetch(ctxFor(t), topic, 0, int64(i*20))
		if err != nil {
			t.Fatalf("neighbour's fetch %d: %v", i, err)
		}
		if len(msgs) == 0 || msgs[0].GetOffset() != int64(i*20) {
			t.Fatalf("neighbour's fetch %d returned %d records", i, len(msgs))
		}
	}
	after := heapInUse()
	// Three sessions, each within its budget (the neighbour's next fetch
	// may reserve before its last one gave its bytes back); a reply may be
	// over its reservation by its encoding overhead.
	if p := peak.Load(); p > 3*pending+64<<10 {
		t.Fatalf("sessions held up to %d reply bytes, budget %d each", p, pending)
	}
	if grown := int64(after) - int64(before); grown > 32<<20 {
		t.Fatalf("heap grew by %d MiB while never-reading clients sent more requests", grown>>20)
	}
	t.Logf("peak reply bytes %d KiB, heap in use %d -> %d MiB", peak.Load()>>10, before>>20, after>>20)
}

// TestProcessMemoryBudget: never-reading sessions together hold at most
// limits.max_memory_bytes (plus one reply's overshoot each), and a new
// upgrade gets 503 while it is spent.
func TestProcessMemoryBudget(t *testing.T) {
	const pending, total = 2 << 20, 3 << 20
	k := testkit.Kafka(t, kfake.SeedTopics(1, topic, bigTopic))
	produceBig(t, k)
	s := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "",
		fmt.Sprintf("session: {max_pending_bytes: %d, write_timeout: 60s}\nlimits: {max_memory_bytes: %d}\n", pending, total)), nil)
	stop := make(chan struct{})
	defer close(stop)
	peak := peakReplyBytes(s, stop)
	for range 2 {
		neverReading(t, s.URL("kafka"), slowFetches)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := client.Dial(ctxFor(t), s.URL("kafka"), client.Options{})
		var status ws.StatusError
		if errors.As(err, &status) && int(status) == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upgrade with the memory budget spent (%d of %d bytes): %v, want 503", s.Server.ReplyBytes(), total, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p := peak.Load(); p > total+2*64<<10 {
		t.Fatalf("sessions held up to %d reply bytes, process budget %d", p, total)
	}
}

// TestFetchesWaitingAtTheEndOfTheLogHoldNoReplyBytes: fetches that wait for
// records hold none of the session's reply budget, so a session with a
// budget of one fetch still reads its next requests: a ping sent after
// eight such fetches is answered first.
func TestFetchesWaitingAtTheEndOfTheLogHoldNoReplyBytes(t *testing.T) {
	s, _ := startServer(t, "    fetch_max_wait: 4s\n", "max_pending_bytes: 1048576")
	c := s.Dial(t, "kafka")
	for i := range 8 {
		if err := c.Send(&pb.PubSubReq{Sequence: int64(100 + i), Req: &pb.PubSubReq_CmdKafkaFetch{
			CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: topic, Partition: 0, Offset: 0}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Send(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdPing{CmdPing: &pb.CmdPing{}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-c.Unmatched():
		if resp.GetSequence() != 1 {
			t.Fatalf("reply %d came before the pong", resp.GetSequence())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no reply")
	}
	// A fetch holds its reservation only while the broker answers.
	deadline := time.Now().Add(3 * time.Second)
	for s.Server.ReplyBytes() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("fetches waiting at the end of the log hold %d reply bytes", s.Server.ReplyBytes())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
