package pubsub

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
	"unsafe"
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
