package server_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// idleCuttingProxy forwards loopback TCP connections to target and cuts a
// connection when no byte has passed either way for idle, as Envoy's
// stream_idle_timeout or a load balancer does. It returns its address.
func idleCuttingProxy(t *testing.T, target string, idle time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				down.Close()
				continue
			}
			var last atomic.Int64
			last.Store(time.Now().UnixNano())
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 {
						last.Store(time.Now().UnixNano())
						if _, werr := dst.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				dst.Close()
				src.Close()
			}
			go pipe(up, down)
			go pipe(down, up)
			go func() {
				for {
					time.Sleep(idle / 10)
					if time.Since(time.Unix(0, last.Load())) > idle {
						down.Close()
						up.Close()
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestQuietSubscriptionOutlivesAProxyIdleTimeout: the server's pings (and
// the client's pongs) are traffic, so a subscription to a quiet topic
// outlives an idle timeout of the proxy in front that is shorter than its
// life; without them the proxy cuts it.
func TestQuietSubscriptionOutlivesAProxyIdleTimeout(t *testing.T) {
	const idle = 800 * time.Millisecond // pings every 100 ms: a pause of 700 ms would be needed to miss it
	for _, tc := range []struct {
		pingInterval string
		survives     bool
	}{
		{"100ms", true},
		{"1m", false},
	} {
		t.Run("ping_interval "+tc.pingInterval, func(t *testing.T) {
			s, k := startServer(t, "", "ping_interval: "+tc.pingInterval)
			proxy := idleCuttingProxy(t, s.Addr, idle)
			c, err := client.Dial(ctxFor(t), "ws://"+proxy+"/kafka", client.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			sub, err := c.Subscribe(ctxFor(t), &pb.CmdKafkaSubscribe{Topic: topic, Partitions: []int32{0}})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-c.Done():
				if tc.survives {
					t.Fatalf("the subscription was cut: %v", c.Err())
				}
				return
			case <-time.After(4 * idle): // quiet for longer than the proxy allows
			}
			if !tc.survives {
				t.Fatal("the proxy did not cut a silent connection: the test proves nothing")
			}
			testkit.Produce(t, k.ListenAddrs(), topic, 0, testkit.Numbered(1))
			select {
			case resp := <-sub.C():
				if n := len(resp.GetKafkaFetchResp().GetMessages()); n != 1 {
					t.Fatalf("push after the quiet time: %v", resp)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no push after the quiet time (connection: %v)", c.Err())
			}
		})
	}
}

// TestSilentPeerIsClosed: a peer that answers no ping (its connection
// vanished, or it is stuck) is closed after pong_timeout.
func TestSilentPeerIsClosed(t *testing.T) {
	s, _ := startServer(t, "", "ping_interval: 100ms, pong_timeout: 200ms")
	conn, _, _, err := ws.Dial(ctxFor(t), s.URL("kafka"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	waitSessions(t, s, 0)
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("closed after %v, before a ping and its pong timeout", d)
	}
}

// waitSessions waits until the server serves n sessions.
func waitSessions(t *testing.T, s *testkit.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Server.ActiveSessions() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions, want %d", s.Server.ActiveSessions(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStalledSubscriberIsCutAtItsDeadline: a subscriber that stops reading
// is disconnected at push_stall_timeout (plus a short grace for the write in
// progress), long before write_timeout.
func TestStalledSubscriberIsCutAtItsDeadline(t *testing.T) {
	const stall = 300 * time.Millisecond
	s, k := startServer(t, "", "push_stall_timeout: 300ms, push_queue_bytes: 65536, write_timeout: 60s")
	dialer := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			err = conn.(*net.TCPConn).SetReadBuffer(64 << 10)
		}
		return conn, err
	}}
	conn, _, _, err := dialer.Dial(ctxFor(t), s.URL("kafka"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b, _ := proto.Marshal(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdKafkaSubscribe{CmdKafkaSubscribe: &pb.CmdKafkaSubscribe{Topic: topic, Partitions: []int32{0}}}})
	if err := wsutil.WriteClientBinary(conn, b); err != nil {
		t.Fatal(err)
	}
	// The acknowledgement tells that the subscription runs.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := wsutil.ReadServerBinary(conn); err != nil {
		t.Fatal(err)
	}
	// Far more than the socket buffers hold, in one go: the subscriber
	// stalls on it.
	value := strings.Repeat("v", 64<<10)
	recs := make([]testkit.Record, 256)
	for i := range recs {
		recs[i] = testkit.Record{Value: value}
	}
	testkit.Produce(t, k.ListenAddrs(), topic, 0, recs)
	produced := time.Now()
	waitSessions(t, s, 0)
	if d := time.Since(produced); d > stall+2*time.Second {
		t.Fatalf("the stalled subscriber was cut %v after the records came, push_stall_timeout %v", d, stall)
	}
	if n := s.Server.ReplyBytes(); n != 0 {
		t.Fatalf("the ended session still holds %d reply bytes", n)
	}
	// What the kernel holds is readable, then the connection ends.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err = io.Copy(io.Discard, conn); errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the connection is still open: %v", err)
	}
}
