package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

const topic = "events"

func ctxFor(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startServer serves a kfake cluster holding topic as cluster "kafka", with
// the given cluster and session lines.
func startServer(t *testing.T, clusterExtra, sessionExtra string) (*testkit.Server, *kfake.Cluster) {
	t.Helper()
	k := testkit.Kafka(t, kfake.SeedTopics(1, topic))
	top := ""
	if sessionExtra != "" {
		top = "session: {" + sessionExtra + "}\n"
	}
	return testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), clusterExtra, top), nil), k
}

func TestMaxSessions(t *testing.T) {
	s, _ := startServer(t, "", "max_sessions: 2")
	first := s.Dial(t, "kafka")
	s.Dial(t, "kafka")

	_, err := client.Dial(ctxFor(t), s.URL("kafka"), client.Options{})
	var status ws.StatusError
	if !errors.As(err, &status) || int(status) != http.StatusServiceUnavailable {
		t.Fatalf("third session: got %v, want the upgrade refused with 503", err)
	}

	// A slot frees when a session ends.
	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := client.Dial(ctxFor(t), s.URL("kafka"), client.Options{})
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session after one ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestMaxFrameBytes(t *testing.T) {
	s, _ := startServer(t, "", "max_frame_bytes: 256")
	c := s.Dial(t, "kafka")

	// A request at the limit is served.
	ping := &pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdPing{CmdPing: &pb.CmdPing{}}}
	ping.GetCmdPing().State = make([]byte, 256-proto.Size(ping)-4) // 4 bytes of lengths and tag grow with it
	if n := proto.Size(ping); n != 256 {
		t.Fatalf("test request is %d bytes, want 256", n)
	}
	if _, err := c.Ping(ctxFor(t), ping.GetCmdPing().State); err != nil {
		t.Fatalf("ping of 256 bytes: %v", err)
	}

	if err := c.SendRaw(ws.OpBinary, make([]byte, 257)); err != nil {
		t.Fatal(err)
	}
	if ce := testkit.WaitClosed(t, c); ce.Code != ws.StatusMessageTooBig {
		t.Fatalf("closed with %d %q, want 1009", ce.Code, ce.Reason)
	}
}

// TestMaxInFlight shows the bound on a session's concurrent requests: with
// max_in_flight 2 and two fetches waiting at the end of the log, a ping sent
// after them is not read until a fetch ends; without the bound it is
// answered first.
func TestMaxInFlight(t *testing.T) {
	for _, tc := range []struct {
		session   string
		pongFirst bool
	}{
		{"max_in_flight: 2", false},
		{"max_in_flight: 3", true},
	} {
		t.Run(tc.session, func(t *testing.T) {
			s, _ := startServer(t, "    fetch_max_wait: 500ms\n", tc.session)
			c := s.Dial(t, "kafka")
			fetchAtEnd := &pb.PubSubReq_CmdKafkaFetch{CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: topic, Partition: 0, Offset: 0}}
			for _, req := range []*pb.PubSubReq{
				{Sequence: 101, Req: fetchAtEnd},
				{Sequence: 102, Req: fetchAtEnd},
				{Sequence: 103, Req: &pb.PubSubReq_CmdPing{CmdPing: &pb.CmdPing{}}},
			} {
				if err := c.Send(req); err != nil {
					t.Fatal(err)
				}
			}
			var order []int64
			for len(order) < 3 {
				select {
				case resp := <-c.Unmatched():
					if resp.GetErrorResp() != nil {
						t.Fatalf("reply %d: %s", resp.GetSequence(), resp.GetErrorResp().GetMessage())
					}
					order = append(order, resp.GetSequence())
				case <-time.After(10 * time.Second):
					t.Fatalf("replies so far %v", order)
				}
			}
			if (order[0] == 103) != tc.pongFirst {
				t.Fatalf("reply order %v: want the pong first: %v", order, tc.pongFirst)
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	s, _ := startServer(t, "", "idle_timeout: 400ms")
	c := s.Dial(t, "kafka")
	// Requests keep a session alive past the timeout...
	for range 6 {
		if _, err := c.Ping(ctxFor(t), nil); err != nil {
			t.Fatalf("ping of an active session: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// ...silence ends it.
	if ce := testkit.WaitClosed(t, c); ce.Code != ws.StatusNormalClosure || ce.Reason != "idle timeout" {
		t.Fatalf("closed with %d %q, want 1000 \"idle timeout\"", ce.Code, ce.Reason)
	}
}

// TestFetchMaxBytes checks that fetch_max_bytes bounds what one fetch
// returns, while a single record larger than the bound still comes back.
func TestFetchMaxBytes(t *testing.T) {
	const limit, valueSize, records = 1024, 200, 20
	s, k := startServer(t, fmt.Sprintf("    fetch_max_bytes: %d\n", limit), "")
	// Uncompressed, so that the limit, which counts bytes on the wire, is
	// comparable with the values' sizes.
	uncompressed := kgo.ProducerBatchCompression(kgo.NoCompression())
	value := strings.Repeat("x", valueSize)
	for range records { // one batch each, so the limit can fall between them
		testkit.Produce(t, k.ListenAddrs(), topic, 0, []testkit.Record{{Value: value}}, uncompressed)
	}
	big := strings.Repeat("B", 4*limit)
	bigOffset := testkit.Produce(t, k.ListenAddrs(), topic, 0, []testkit.Record{{Value: big}}, uncompressed)[0]
	c := s.Dial(t, "kafka")

	msgs, err := c.Fetch(ctxFor(t), topic, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) == 0 || len(msgs)*valueSize > limit {
		t.Fatalf("fetch of %d-byte records under a %d-byte limit returned %d records", valueSize, limit, len(msgs))
	}
	for i, m := range msgs {
		if m.Offset != int64(i) {
			t.Fatalf("record %d has offset %d", i, m.Offset)
		}
	}

	msgs, err = c.Fetch(ctxFor(t), topic, 0, bigOffset)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Offset != bigOffset || string(msgs[0].Value) != big {
		t.Fatalf("fetch of a record larger than the limit returned %d records", len(msgs))
	}
}

// TestWriteTimeout checks that a client that stops reading is disconnected
// once a reply could not be written for write_timeout, instead of having
// its replies buffered.
func TestWriteTimeout(t *testing.T) {
	s, k := startServer(t, "", "write_timeout: 300ms")
	testkit.Produce(t, k.ListenAddrs(), topic, 0, []testkit.Record{{Value: strings.Repeat("v", 900<<10)}},
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	conn, _, _, err := ws.Dial(ctxFor(t), s.URL("kafka"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fetch, err := proto.Marshal(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdKafkaFetch{
		CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: topic, Partition: 0, Offset: 0}}})
	if err != nil {
		t.Fatal(err)
	}
	// Far more reply bytes than socket buffers hold; the client reads none.
	go func() {
		for range 64 {
			if wsutil.WriteClientBinary(conn, fetch) != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.Server.ActiveSessions() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the session of a client that does not read is still open")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
