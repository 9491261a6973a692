package pubsub

import (
	"bufio"
	"io"
	"runtime/debug"
	"time"

	"github.com/gobwas/ws"
)

// WebSocket close codes used by the engine (RFC 6455 section 7.4.1).
const (
	CloseNormal          = ws.StatusNormalClosure
	CloseGoingAway       = ws.StatusGoingAway
	CloseProtocolError   = ws.StatusProtocolError
	CloseUnsupportedData = ws.StatusUnsupportedData
	CloseMessageTooBig   = ws.StatusMessageTooBig
	CloseInternalError   = ws.StatusInternalServerError
	ClosePolicyViolation = ws.StatusPolicyViolation
	closeReasonIdle      = "idle timeout"
	closeReasonShutdown  = "server shutting down"
	closeReasonPing      = "ping timeout"
)

// closeLinger bounds how long a session that sent a close frame waits for the
// client's close frame before closing the socket.
const closeLinger = time.Second

// awaitPeerClose reads and discards frames until the client answers a close
// frame the server sent, hangs up, or closeLinger passes. Closing a socket
// with unread input makes the kernel reset the connection, which can destroy
// the close frame before the client reads it.
func (s *session) awaitPeerClose() {
	if !s.closing.Load() || s.peerClosed {
		return
	}
	s.conn.SetReadDeadline(time.Now().Add(closeLinger))
	if s.unread < 0 { // the client's stream cannot be parsed: drain it
		io.Copy(io.Discard, &s.in)
		return
	}
	if _, err := io.CopyN(io.Discard, &s.in, s.unread); err != nil {
		return
	}
	for {
		h, err := ws.ReadHeaderBuffer(&s.in, s.in.headerScratch())
		if err != nil || h.OpCode == ws.OpClose {
			return
		}
		if _, err := io.CopyN(io.Discard, &s.in, h.Length); err != nil {
			return
		}
	}
}

// abandonWrites gives a write blocked on a client that does not read until
// grace from now, then fails it, which closes the connection; writes that
// start later get the same deadline. A session that is being closed calls
// it so that its close does not wait for write_timeout: the close frame
// follows if the blocked write ends in time.
func (s *session) abandonWrites(grace time.Duration) {
	at := time.Now().Add(grace)
	s.abandonAt.CompareAndSwap(0, at.UnixNano())
	s.conn.SetWriteDeadline(time.Unix(0, s.abandonAt.Load()))
}

// closeAbandoning closes the session with code and reason without waiting
// for a write blocked on the client beyond closeGrace: its handlers stop at
// once, and the close frame follows the frame being written if the client
// takes it in time; otherwise the connection is closed without one. It runs
// in a goroutine of its own.
func (s *session) closeAbandoning(code ws.StatusCode, reason string) {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Logger.Error("pubsub: close panic", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	s.cancel()
	s.abandonWrites(closeGrace)
	s.closeWith(code, reason)
}

// closeGrace is how long a session closed for a stalled or silent client
// lets a write in progress finish before abandoning it.
const closeGrace = 500 * time.Millisecond

// closeWith sends a close frame with code and reason (once), ends the
// session's handlers and leaves closeLinger for the client's answer. Later
// writes fail with ErrSessionClosed.
func (s *session) closeWith(code ws.StatusCode, reason string) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closing.Swap(true) {
		return
	}
	s.closeCode, s.closeReason = code, reason
	if s.werr == nil {
		if s.bw == nil {
			s.bw = writerPool.Get().(*bufio.Writer)
			s.bw.Reset(countedWriter{s})
		}
		s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		body := ws.NewCloseFrameBody(code, reason)
		if ws.WriteHeader(s.bw, ws.Header{Fin: true, OpCode: ws.OpClose, Length: int64(len(body))}) == nil {
			s.bw.Write(body)
		}
		s.releaseWriter()
	} else if s.bw != nil {
		s.bw.Reset(nil)
		writerPool.Put(s.bw)
		s.bw = nil
	}
	s.cancel()
	s.conn.SetReadDeadline(time.Now().Add(closeLinger))
	s.wakeReader() // a parked reader reads the client's answer
}
