package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/envoy-pubsub/gateway/pubsub"
)

// listen accepts WebSocket upgrades on a loopback port and hands each
// connection to serve; it returns the URL.
func listen(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if _, err := ws.Upgrade(conn); err != nil {
				conn.Close()
				continue
			}
			go serve(conn)
		}
	}()
	return "ws://" + ln.Addr().String() + "/"
}

// serveSessions runs pubsub sessions with opts on every connection.
func serveSessions(t *testing.T, opts pubsub.Options) string {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return listen(t, func(conn net.Conn) { pubsub.Serve(ctx, conn, pubsub.NewMux(), opts) })
}

func TestClientReportsADeadServer(t *testing.T) {
	held := make(chan net.Conn, 1)
	url := listen(t, func(conn net.Conn) { held <- conn }) // upgrades, then never reads
	c, err := Dial(testCtx(t), url, Options{PingInterval: 50 * time.Millisecond, PongTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	defer func() { (<-held).Close() }()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a server that answers no ping was not reported")
	}
	if !errors.Is(c.Err(), ErrPingTimeout) {
		t.Fatalf("connection ended with %v, want ErrPingTimeout", c.Err())
	}
}

// TestClientPingsKeepAnIdleSessionOpen: the server answers the client's
// pings, and they count as activity for its idle timeout (long enough that
// a loaded machine's pauses do not idle the session out).
func TestClientPingsKeepAnIdleSessionOpen(t *testing.T) {
	const idle = 600 * time.Millisecond
	url := serveSessions(t, pubsub.Options{IdleTimeout: idle})
	c, err := Dial(testCtx(t), url, Options{PingInterval: idle / 6, PongTimeout: idle})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-c.Done():
		t.Fatalf("session ended: %v", c.Err())
	case <-time.After(3 * idle):
	}
	if _, err := c.Ping(testCtx(t), nil); err != nil {
		t.Fatalf("ping after %v of silence but for pings: %v", 3*idle, err)
	}
}

// TestClientAnswersServerPings: a session whose server pings often lives on
// for four pong timeouts, in which a client that answered no ping would
// have been closed (the timeout is long enough that a loaded machine's
// pauses do not count as a missing pong).
func TestClientAnswersServerPings(t *testing.T) {
	const interval, pongTimeout = 30 * time.Millisecond, 250 * time.Millisecond
	url := serveSessions(t, pubsub.Options{PingInterval: interval, PongTimeout: pongTimeout})
	c, err := Dial(testCtx(t), url, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-c.Done():
		t.Fatalf("session ended: %v", c.Err())
	case <-time.After(4 * pongTimeout):
	}
	if _, err := c.Ping(testCtx(t), nil); err != nil {
		t.Fatal(err)
	}
}
