package pubsub

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/internal/wstest"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// TestIdleSessionsOverTCPHoldNoGoroutine opens sessions on loopback TCP
// that fall silent: their readers park, so the process holds no goroutine
// for them, and each still answers when its client speaks again and ends
// when its client leaves.
func TestIdleSessionsOverTCPHoldNoGoroutine(t *testing.T) {
	const n = 50
	before := runtime.NumGoroutine()
	var ended atomic.Int32
	clients := make([]net.Conn, n)
	opts := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), parkAfter: time.Millisecond}
	for i := range clients {
		srv, cli := tcpPair(t)
		clients[i] = cli
		Start(context.Background(), srv, NewMux(), opts, func(error) { ended.Add(1) })
	}
	eventually(t, "idle sessions to hold no goroutine", func() bool { return runtime.NumGoroutine() <= before+2 })
	req, _ := proto.Marshal(ping(7, "again"))
	for _, c := range clients {
		if err := ws.WriteFrame(c, ws.MaskFrame(ws.NewBinaryFrame(req))); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := wstest.ReadFrame(c, 1<<20)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		if f.Header.OpCode != ws.OpBinary {
			t.Fatalf("session %d: opcode %v", i, f.Header.OpCode)
		}
	}
	eventually(t, "answered sessions to park again", func() bool { return runtime.NumGoroutine() <= before+2 })
	for _, c := range clients {
		c.Close()
	}
	eventually(t, "every session to end", func() bool { return ended.Load() == n })
}

// TestParkedSessionEndsOnShutdown checks that a parked session is woken to
// send its 1001 close frame when its context ends.
func TestParkedSessionEndsOnShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, cli := tcpPair(t)
	defer cli.Close()
	ended := make(chan error, 1)
	Start(ctx, srv, NewMux(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), parkAfter: time.Millisecond}, func(err error) { ended <- err })
	eventually(t, "the session to park", func() bool { return runtime.NumGoroutine() <= before })
	cancel()
	p := &peer{t: t, conn: cli}
	if code, reason := p.expectClose(); code != CloseGoingAway || reason != closeReasonShutdown {
		t.Fatalf("close %d %q, want %d %q", code, reason, CloseGoingAway, closeReasonShutdown)
	}
	cli.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("parked session did not end on shutdown")
	}
}

// TestParkedSessionEndsWhenAWriteFails: a client that sends nothing and
// stops reading what it is pushed has a parked reader; the write that times
// out closes the connection and wakes the reader, which ends the session.
func TestParkedSessionEndsWhenAWriteFails(t *testing.T) {
	srv, cli := tcpPair(t)
	defer cli.Close()
	big := fetchPush(string(make([]byte, 60<<10)))
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		for {
			if err := req.Push(ctx, proto.Clone(big).(*pb.PubSubResp)); err != nil {
				return nil, nil
			}
		}
	}))
	ended := make(chan error, 1)
	opts := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), parkAfter: time.Millisecond,
		WriteTimeout: 200 * time.Millisecond, PushStallTimeout: time.Minute, IdleTimeout: -1, PingInterval: -1}
	Start(context.Background(), srv, m, opts, func(err error) { ended <- err })
	req, _ := proto.Marshal(fetchReq(1, "t"))
	if err := ws.WriteFrame(cli, ws.MaskFrame(ws.NewBinaryFrame(req))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("session whose write failed did not end")
	}
}
