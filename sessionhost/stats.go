package sessionhost

import "sync/atomic"

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
// right whichever configuration's Stats are current.
type observer struct {
	current atomic.Pointer[Stats]
	active  atomic.Int64
}

func (o *observer) use(s Stats) { o.current.Store(&s) }

func (o *observer) stats() Stats {
	if s := o.current.Load(); s != nil {
		return *s
	}
	return nil
}

// SessionStarted implements server.Observer.
func (o *observer) SessionStarted() {
	n := o.active.Add(1)
	if s := o.stats(); s != nil {
		s.SessionStarted(n)
	}
}

// SessionEnded implements server.Observer.
func (o *observer) SessionEnded() {
	n := o.active.Add(-1)
	if s := o.stats(); s != nil {
		s.SessionEnded(max(n, 0))
	}
}

// Refused implements server.Observer.
func (o *observer) Refused(status int) {
	if s := o.stats(); s != nil {
		s.Refused(status)
	}
}

// Command implements server.Observer.
func (o *observer) Command(command string, err error) {
	if s := o.stats(); s != nil {
		s.Command(command, err)
	}
}

func (o *observer) ticketRejected() {
	if s := o.stats(); s != nil {
		s.TicketRejected()
	}
}

func (o *observer) ticketsOutstanding(n int) {
	if s := o.stats(); s != nil {
		s.TicketsOutstanding(int64(n))
	}
}
