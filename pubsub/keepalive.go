package pubsub

import (
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// keepalive pings the client every PingInterval and closes the session when
// a pong does not come within PongTimeout of the ping being written. Pings
// are traffic for the proxies on the way (Envoy's stream idle timeout, load
// balancers), and the missing pong finds a peer whose connection vanished.
// A session holds one runtime timer, no goroutine, for its pings and for
// idling out its parked reader: the timer's function runs only when it
// fires, at the earlier of the two.
type keepalive struct {
	mu sync.Mutex
	// timer runs timerFired; nil when the session neither pings nor
	// parks its reader with an idle timeout.
	timer   *time.Timer
	waiting bool // a ping is out: pingDue is its pong deadline
	stopped bool
	// pong is set by the reader when a pong arrives.
	pong atomic.Bool
	// pingDue is when keepaliveTick is due (monoNow; 0: never).
	pingDue int64
	sentAt  int64 // when the ping that is out was written (monoNow)
}

// startTimer makes the session's timer and arms the first ping, if the
// session pings or idles out a parked reader.
func (s *session) startTimer() {
	if s.opts.PingInterval <= 0 && !s.idlesWhileParked() {
		return
	}
	k := &s.keepalive
	k.mu.Lock()
	defer k.mu.Unlock()
	if s.opts.PingInterval > 0 {
		k.pingDue = monoNow() + int64(s.opts.PingInterval)
	}
	k.timer = time.AfterFunc(time.Hour, s.timerFired)
	s.armTimerLocked()
}

// idlesWhileParked reports whether the timer idles out the session while
// its reader is parked (a running reader has its read deadline).
func (s *session) idlesWhileParked() bool { return s.watch != nil && s.opts.IdleTimeout > 0 }

// armTimerLocked sets the timer to the next ping or pong deadline, or to
// the idle deadline if the reader is parked and that is earlier. Callers
// hold keepalive.mu.
func (s *session) armTimerLocked() {
	k := &s.keepalive
	if k.timer == nil || k.stopped {
		return
	}
	var next time.Duration
	armed := k.pingDue != 0
	if armed {
		next = time.Duration(k.pingDue - monoNow())
	}
	if s.idlesWhileParked() && s.readState.Load() == readParked {
		if idle := time.Until(time.Unix(0, s.idleAt.Load())); !armed || idle < next {
			next, armed = idle, true
		}
	}
	if armed {
		k.timer.Reset(max(next, 0))
	} else {
		k.timer.Stop()
	}
}

// rearmTimer sets the timer again (see armTimerLocked).
func (s *session) rearmTimer() {
	k := &s.keepalive
	k.mu.Lock()
	defer k.mu.Unlock()
	s.armTimerLocked()
}

// timerFired runs the keepalive if it is due and the idle check of a
// parked reader, then sets the timer again.
func (s *session) timerFired() {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Logger.Error("pubsub: session timer panic", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	k := &s.keepalive
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	pingDue := k.pingDue != 0 && monoNow() >= k.pingDue
	if pingDue {
		k.pingDue = 0 // keepaliveTick sets the next
	}
	k.mu.Unlock()
	if pingDue {
		s.keepaliveTick()
	}
	if s.idlesWhileParked() {
		s.idleCheck()
	}
	s.rearmTimer()
}

// stopTimer stops the timer of an ending session.
func (s *session) stopTimer() {
	k := &s.keepalive
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	if k.timer != nil {
		k.timer.Stop()
	}
}

// keepaliveTick runs when the keepalive is due: it checks the pong of the
// ping that is out, and sends the next ping when it is due and the last one
// was answered. One ping is out at a time.
func (s *session) keepaliveTick() {
	k := &s.keepalive
	k.mu.Lock()
	if k.stopped || s.ctx.Err() != nil {
		k.mu.Unlock()
		return
	}
	if k.waiting && k.pong.Load() {
		k.waiting = false
	}
	if k.waiting {
		left := time.Duration(k.sentAt-monoNow()) + s.opts.PongTimeout
		switch {
		case left > 0:
			k.pingDue = monoNow() + int64(left)
		case s.readerBlocked.Load():
			// The reader waits for the client to take its replies and
			// reads no pong meanwhile; write_timeout judges that client.
			k.pingDue = monoNow() + int64(s.opts.PongTimeout)
		default:
			s.opts.Logger.Info("pubsub: closing session: no pong", "remote", s.conn.RemoteAddr(), "timeout", s.opts.PongTimeout)
			go s.closeAbandoning(CloseGoingAway, closeReasonPing)
		}
		k.mu.Unlock()
		return
	}
	k.pong.Store(false)
	k.mu.Unlock()
	// The write may wait behind a reply being written (not holding mu, so
	// that an ending session does not wait for it); the pong deadline
	// counts from when the ping left.
	if err := s.writeFrame(ws.OpPing, nil); err != nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	k.waiting = true
	k.sentAt = monoNow()
	k.pingDue = k.sentAt + int64(min(s.opts.PingInterval, s.opts.PongTimeout))
}
