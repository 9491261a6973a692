package pubsub

import (
	"runtime/debug"

	"github.com/gobwas/ws"
)

// CloseAbnormal is the close code reported (never sent) for a session whose
// connection ended without a close frame (RFC 6455 section 7.4.1).
const CloseAbnormal = ws.StatusAbnormalClosure

// End is how a session ended, reported to Options.OnEnd.
type End struct {
	// Code and Reason are those of the close frame the server sent (the
	// client's code, echoed, when the client closed first), or
	// CloseAbnormal and "" when the connection ended without one.
	Code   int
	Reason string
	// BytesRead and BytesWritten count the bytes of the connection, frame
	// headers included.
	BytesRead, BytesWritten int64
	// Err is the error that ended the session, nil for a clean close.
	Err error
}

// reportEnd calls OnEnd once the session has fully ended; a panic in it is
// logged, since Serve never panics.
func (s *session) reportEnd(err error) {
	if s.opts.OnEnd == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			s.opts.Logger.Error("pubsub: session end hook panic", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	s.wmu.Lock()
	e := End{Code: int(CloseAbnormal), BytesRead: s.in.read, BytesWritten: s.written, Err: err}
	if s.closing.Load() && s.closeCode != 0 {
		e.Code, e.Reason = int(s.closeCode), s.closeReason
	}
	s.wmu.Unlock()
	s.opts.OnEnd(e)
}

// countedWriter is the session's connection as its buffered writer sees
// it: it counts the bytes written.
type countedWriter struct{ s *session }

func (w countedWriter) Write(p []byte) (int, error) {
	n, err := w.s.conn.Write(p)
	w.s.countWritten(n)
	return n, err
}

// countWritten counts n bytes written to the connection. Callers hold wmu.
func (s *session) countWritten(n int) {
	if n > 0 {
		s.written += int64(n)
		s.opts.Metrics.BytesWritten(n)
	}
}
