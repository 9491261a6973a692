package sessionhost

import (
	"sync"
	"sync/atomic"
)

// Stats receives a host's events, for metrics (the filter feeds them to
// Envoy's stats). Every method may be called from many goroutines at once
// and must not block.
type Stats interface {
	// SessionStarted and SessionEnded report a session and the number of
	// sessions the host serves after it.
	SessionStarted(active int64)
	SessionEnded(active int64)
	// Refused reports an upgrade refused with an HTTP status.
	Refused(status int)
	// Command reports a finished command and its error.
	Command(command string, err error)
	// TicketRejected reports an upgrade with a missing, unknown, reused or
	// expired ticket.
	TicketRejected()
	// TicketsOutstanding reports the number of tickets issued and neither
	// redeemed, revoked nor expired, after each change.
	TicketsOutstanding(n int64)
}

// observer feeds the session servers' events to the Stats of the newest
// configuration. It counts active sessions itself, so that the count is
// right whichever configuration's Stats are current. Events are reported
// under a read lock that use takes for writing: once use has replaced a
// configuration's Stats, no event reaches them any more (Envoy refuses the
// stats of a destroyed configuration).
type observer struct {
	mu      sync.RWMutex
	current Stats
	active  atomic.Int64
}

func (o *observer) use(s Stats) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.current = s
}

// report calls event with the current Stats, if any.
func (o *observer) report(event func(Stats)) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.current != nil {
		event(o.current)
	}
}

// SessionStarted implements server.Observer.
func (o *observer) SessionStarted() {
	n := o.active.Add(1)
	o.report(func(s Stats) { s.SessionStarted(n) })
}

// SessionEnded implements server.Observer.
func (o *observer) SessionEnded() {
	n := o.active.Add(-1)
	o.report(func(s Stats) { s.SessionEnded(max(n, 0)) })
}

// Refused implements server.Observer.
func (o *observer) Refused(status int) {
	o.report(func(s Stats) { s.Refused(status) })
}

// Command implements server.Observer.
func (o *observer) Command(command string, err error) {
	o.report(func(s Stats) { s.Command(command, err) })
}

func (o *observer) ticketRejected() {
	o.report(func(s Stats) { s.TicketRejected() })
}

func (o *observer) ticketsOutstanding(n int) {
	o.report(func(s Stats) { s.TicketsOutstanding(int64(n)) })
}
