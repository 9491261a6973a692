package pubsub

import (
	"net"
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
	now := time.Now().UnixNano()
	if s.raw == nil || f.size > maxDirectPush || now-s.lastPushWrite.Load() < int64(coalesceWindow) || !s.wmu.TryLock() {
		return nil, false
	}
	defer s.wmu.Unlock()
	// Other writers waiting, a failure or a close: the queue's writer
	// sees to them.
	if s.bw != nil || s.pendingWrites.Load() > 0 || s.werr != nil || s.closing.Load() || s.abandonAt.Load() != 0 {
		return nil, false
	}
	buf := getBuf()
	defer putBuf(buf)
	w := appendWriter{b: (*buf)[:0]}
	var scratch [ws.MaxHeaderSize]byte
	prefix := 0
	if f.shared != nil {
		prefix = sequenceSize(f.seq)
	}
	body := f.shared.bodyOr(f.own)
	if ws.WriteHeaderBuffer(&w, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(prefix + len(body))}, scratch[:]) != nil {
		return nil, false
	}
	if f.shared != nil {
		w.b = appendSequence(w.b, f.seq)
	}
	w.b = append(w.b, body...)
	*buf = w.b
	n := writeNonBlocking(s.raw, w.b)
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
