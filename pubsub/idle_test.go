package pubsub

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
)

// TestAParkedSessionHoldsNoReadBuffer: a session's reader takes its
// read-ahead and header scratch from a pool and gives them back when it
// parks, so that an idle session holds no read buffer; the session still
// reads and answers its client after each park.
func TestAParkedSessionHoldsNoReadBuffer(t *testing.T) {
	srv, cli := tcpPair(t)
	ended := make(chan error, 1)
	opts := Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), parkAfter: time.Millisecond}
	s := start(context.Background(), srv, NewMux(), opts, func(err error) { ended <- err })
	p := &peer{t: t, conn: cli}
	for seq := int64(1); seq <= 3; seq++ {
		if held := parkedReadBuffers(t, s); held != nil {
			t.Fatalf("before request %d: the parked session holds its read buffers", seq)
		}
		p.send(ping(seq, "again"))
		if got := p.recv(); got.GetSequence() != seq || string(got.GetPongResp().GetState()) != "again" {
			t.Fatalf("reply %v, want the pong of request %d", got, seq)
		}
	}
	cli.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end after its client left")
	}
}

// parkedReadBuffers waits for s's reader to park and returns the read
// buffers it holds then.
func parkedReadBuffers(t *testing.T, s *session) *readBuffers {
	t.Helper()
	eventually(t, "the reader to park", func() bool { return s.readState.Load() == readParked })
	held := s.in.buf
	// Publish this read to the next reader, which the client's next bytes
	// start after swapping readState (the race detector orders accesses
	// only through synchronization).
	s.readState.CompareAndSwap(readParked, readParked)
	return held
}

// TestASessionIsAtMostHalfAKilobyte bounds the struct of a session, the
// largest part of what an idle session holds: it refers to its options
// instead of holding a copy, and its read buffers are pooled (it was 792
// bytes with both).
// The bound is a size class of the allocator: a field added past it costs
// every idle session 64 bytes more.
func TestASessionIsAtMostHalfAKilobyte(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 512 {
		t.Fatalf("a session is %d bytes, want at most 512", n)
	}
}

// TestTheSessionTimerServesPingsAndIdleTimeoutAlone: a parked session's one
// timer idles it out when it does not ping, and pings it when it does not
// idle out.
func TestTheSessionTimerServesPingsAndIdleTimeoutAlone(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Run("idle timeout without pings", func(t *testing.T) {
		srv, cli := tcpPair(t)
		defer cli.Close()
		const idle = 150 * time.Millisecond
		opened := time.Now()
		start(context.Background(), srv, NewMux(), Options{Logger: logger, parkAfter: time.Millisecond, PingInterval: -1, IdleTimeout: idle}, nil)
		p := &peer{t: t, conn: cli}
		f := p.readFrame() // no ping comes first
		if code, reason := ws.ParseCloseFrameData(f.Payload); f.Header.OpCode != ws.OpClose || code != CloseNormal || reason != closeReasonIdle {
			t.Fatalf("got opcode %v (%d %q), want close 1000 %q", f.Header.OpCode, code, reason, closeReasonIdle)
		}
		if d := time.Since(opened); d < idle {
			t.Fatalf("idled out after %v, before %v", d, idle)
		}
	})
	t.Run("pings without idle timeout", func(t *testing.T) {
		srv, cli := tcpPair(t)
		defer cli.Close()
		s := start(context.Background(), srv, NewMux(), Options{Logger: logger, parkAfter: time.Millisecond, PingInterval: 20 * time.Millisecond, IdleTimeout: -1}, nil)
		p := &peer{t: t, conn: cli}
		for range 5 {
			f := p.readFrame()
			if f.Header.OpCode != ws.OpPing {
				t.Fatalf("got opcode %v, want a ping", f.Header.OpCode)
			}
			p.writeFrame(ws.MaskFrame(ws.NewPongFrame(f.Payload)))
		}
		if held := parkedReadBuffers(t, s); held != nil {
			t.Fatal("the parked session holds its read buffers")
		}
	})
}
