package pubsub

import (
	"runtime/debug"
	"sync"
	"time"

	"github.com/gobwas/ws"
)

// Deadline ends one session at a moment that may move: when it passes, the
// session is closed with the deadline's close code and reason. It is how a
// credential's lifetime bounds a session (a handler that accepts a fresh
// credential moves it) while the engine knows nothing of credentials. A
// Deadline serves one session; it is safe for concurrent use.
type Deadline struct {
	code   ws.StatusCode
	reason string

	mu    sync.Mutex
	at    time.Time   // zero: never
	timer *time.Timer // armed while a session is served with the deadline
	end   func()      // closes the session; nil while none is served
}

// NewDeadline returns a deadline at at (zero: none yet) that closes its
// session with code and reason.
func NewDeadline(at time.Time, code ws.StatusCode, reason string) *Deadline {
	return &Deadline{at: at, code: code, reason: reason}
}

// At returns when the session ends, zero for never.
func (d *Deadline) At() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.at
}

// Set moves the end of the session to at (zero: never). A session that has
// already been closed by the deadline stays closed.
func (d *Deadline) Set(at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.at = at
	d.armLocked()
}

// bind makes the deadline close a session with end, from a goroutine of
// the timer's; the returned function unbinds it when the session is over.
func (d *Deadline) bind(end func(code ws.StatusCode, reason string), log func(p any)) (unbind func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.end = func() {
		defer func() {
			if p := recover(); p != nil {
				log(p)
			}
		}()
		end(d.code, d.reason)
	}
	d.armLocked()
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.end = nil
		if d.timer != nil {
			d.timer.Stop()
		}
	}
}

// armLocked (re)starts the timer for the current moment.
func (d *Deadline) armLocked() {
	if d.end == nil {
		return
	}
	if d.at.IsZero() {
		if d.timer != nil {
			d.timer.Stop()
		}
		return
	}
	if d.timer == nil {
		d.timer = time.AfterFunc(time.Until(d.at), d.fire)
		return
	}
	d.timer.Reset(time.Until(d.at))
}

// fire ends the session unless the deadline moved later meanwhile.
func (d *Deadline) fire() {
	d.mu.Lock()
	if d.end == nil || d.at.IsZero() {
		d.mu.Unlock()
		return
	}
	if wait := time.Until(d.at); wait > 0 {
		d.timer.Reset(wait)
		d.mu.Unlock()
		return
	}
	end := d.end
	d.end = nil
	d.mu.Unlock()
	end()
}

// logPanic returns the function that logs a panic of the deadline's
// timer for s.
func (s *session) logPanic(what string) func(p any) {
	return func(p any) {
		s.opts.Logger.Error("pubsub: "+what+" panic", "panic", p, "stack", string(debug.Stack()))
	}
}
