package pubsub

import (
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// maxDirectPush bounds the pushes written at once by their pusher (larger
// ones are queued and written without a copy).
const maxDirectPush = 16 << 10

// coalesceWindow is how long after a session's last push write a push is
// queued rather than written at once: pushes that follow each other that
// closely go out together, several in one write, from the push writer.
const coalesceWindow = 300 * time.Microsecond

// clockStart is what monoNow counts from.
var clockStart = time.Now()

// monoNow returns the monotonic clock in nanoseconds: one clock read,
// where time.Now takes two (wall and monotonic), on every push.
func monoNow() int64 { return int64(time.Since(clockStart)) }

// rawConnOf returns the descriptor access of a TCP or unix connection, for
// writes that must not block; nil for other connections.
func rawConnOf(conn net.Conn) syscall.RawConn {
	if !writesVectors(conn) {
		return nil
	}
	rc, err := conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// writeNow writes push f at once, in the pusher's goroutine and without
// blocking, when nothing else is being written or queued and the last
// push write is more than coalesceWindow ago: a push to a subscriber fed
// now and then costs one system call and no goroutine. ok false
// means nothing was written (queue f). Otherwise rest, if not nil, holds
// the bytes of the frame that the socket did not take, which must be
// written next. Callers hold qmu with the push queue empty and no push
// writer running.
func (s *session) writeNow(f pushFrame) (rest *[]byte, ok bool) {
	now := monoNow()
	if s.raw == nil || f.size > maxDirectPush || now-s.lastPushWrite.Load() < int64(coalesceWindow) || !s.wmu.TryLock() {
		return nil, false
	}
	defer s.wmu.Unlock()
	// Other writers waiting, a failure or a close: the queue's writer
	// sees to them.
	if s.bw != nil || s.pendingWrites.Load() > 0 || s.werr != nil || s.closing.Load() || s.abandonAt.Load() != 0 {
		return nil, false
	}
	w := directWrites.Get().(*directWrite)
	defer directWrites.Put(w)
	w.b = w.b[:0]
	prefix := 0
	if f.shared != nil {
		prefix = sequenceSize(f.seq)
	}
	body := f.shared.bodyOr(f.own)
	if ws.WriteHeaderBuffer(&w.appendWriter, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(prefix + len(body))}, w.scratch[:]) != nil {
		return nil, false
	}
	if f.shared != nil {
		w.b = appendSequence(w.b, f.seq)
	}
	w.b = append(w.b, body...)
	n := writeNonBlocking(s.raw, w)
	if n <= 0 {
		return nil, false
	}
	s.lastPushWrite.Store(now)
	s.countWritten(n)
	if n < len(w.b) {
		rest = getBuf()
		*rest = append((*rest)[:0], w.b[n:]...)
	}
	return rest, true
}

// directWrite is a push written at once: its frame, and what writing it
// needs, pooled so that a write allocates nothing.
type directWrite struct {
	appendWriter // the frame: header, sequence and body
	scratch      [ws.MaxHeaderSize]byte
	took         int                   // the bytes the socket took
	write        func(fd uintptr) bool // writes the frame; set on first use
}

// directWrites pools directWrite values: their frames are at most
// maxDirectPush and a little more.
var directWrites = sync.Pool{New: func() any { return new(directWrite) }}
