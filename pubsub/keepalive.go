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
// A session holds one runtime timer for it, no goroutine: the timer's
// function runs only when it fires.
type keepalive struct {
	mu      sync.Mutex
	timer   *time.Timer // nil when pings are off
	waiting bool        // a ping is out: the timer is its pong deadline
	stopped bool
	// pong is set by the reader when a pong arrives.
	pong   atomic.Bool
	sentAt int64 // when the ping that is out was written (monoNow)
}

// startKeepalive arms the first ping.
func (s *session) startKeepalive() {
	if s.opts.PingInterval <= 0 {
		return
	}
	k := &s.keepalive
	k.mu.Lock()
	defer k.mu.Unlock()
	k.timer = time.AfterFunc(s.opts.PingInterval, s.keepaliveTick)
}

// stopKeepalive stops the pings of an ending session.
func (s *session) stopKeepalive() {
	k := &s.keepalive
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	if k.timer != nil {
		k.timer.Stop()
	}
}

// keepaliveTick runs when the timer fires: it checks the pong of the ping
// that is out, and sends the next ping when it is due and the last one was
// answered. One ping is out at a time.
func (s *session) keepaliveTick() {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Logger.Error("pubsub: keepalive panic", "panic", p, "stack", string(debug.Stack()))
		}
	}()
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
			k.timer.Reset(left)
		case s.readerBlocked.Load():
			// The reader waits for the client to take its replies and
			// reads no pong meanwhile; write_timeout judges that client.
			k.timer.Reset(s.opts.PongTimeout)
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
	k.timer.Reset(min(s.opts.PingInterval, s.opts.PongTimeout))
}
