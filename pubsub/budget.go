package pubsub

import (
	"context"
	"sync"
	"sync/atomic"
)

// MemoryBudget bounds the reply bytes that all the sessions sharing it hold
// together: bytes reserved for replies being built, and replies encoded or
// queued but not yet written. Handlers reserve before they build a reply
// (Request.Reserve); when the budget is spent, reservations wait, and as
// bytes come back the waiting sessions that hold the least go first, so the
// sessions holding the most wait longest. One reservation larger than the
// whole budget is let through once nothing else is held, so that a large
// record is still delivered (what the reserving request holds already does
// not count). It is safe for concurrent use.
type MemoryBudget struct {
	max     int64
	mu      sync.Mutex
	used    int64
	waiters []*budgetWaiter
	// waits counts the reservations that waited.
	waits int64
}

// budgetWaiter is a reservation waiting for room in a MemoryBudget.
type budgetWaiter struct {
	n       int64
	own     int64         // what the reserving request holds already
	held    *atomic.Int64 // what the waiting session holds: less goes first
	ready   chan struct{} // closed when granted
	granted bool
}

// NewMemoryBudget returns a budget of maxBytes.
func NewMemoryBudget(maxBytes int) *MemoryBudget {
	return &MemoryBudget{max: int64(maxBytes)}
}

// Waits returns how many reservations have waited for room in the budget.
func (b *MemoryBudget) Waits() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waits
}

// Used returns the bytes held under the budget.
func (b *MemoryBudget) Used() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int(b.used)
}

// Full reports whether the budget is spent or reservations wait for it: a
// server refuses new sessions then, before the process grows further.
func (b *MemoryBudget) Full() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used >= b.max || len(b.waiters) > 0
}

// acquire takes n more bytes for a request that holds own already, waiting
// while they do not fit; held is what the caller's session holds, which
// orders the waiters. It fails with ctx's error or ErrSessionClosed when
// ctx or session ends first.
func (b *MemoryBudget) acquire(ctx context.Context, session <-chan struct{}, n, own int64, held *atomic.Int64) error {
	b.mu.Lock()
	if len(b.waiters) == 0 && b.fits(n, own) {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, own: own, held: held, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.waits++
	b.grantLocked()
	b.mu.Unlock()
	var err error
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-session:
		err = ErrSessionClosed
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.granted { // granted while giving up: give it back
		b.used -= n
	} else {
		for i, o := range b.waiters {
			if o == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
	}
	b.grantLocked()
	return err
}

// charge adds n bytes (negative: gives them back) without waiting.
func (b *MemoryBudget) charge(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used += n
	if n < 0 {
		b.grantLocked()
	}
}

// fits reports whether n more bytes fit for a request that holds own of
// them already: within the budget, or alone (nothing else is held). Callers
// hold mu.
func (b *MemoryBudget) fits(n, own int64) bool {
	return b.used == own || b.used+n <= b.max
}

// grantLocked grants waiting reservations, those of the sessions holding
// the least first, while they fit. Callers hold mu.
func (b *MemoryBudget) grantLocked() {
	for len(b.waiters) > 0 {
		first := 0
		for i, w := range b.waiters {
			if w.held.Load() < b.waiters[first].held.Load() {
				first = i
			}
		}
		w := b.waiters[first]
		if !b.fits(w.n, w.own) {
			return
		}
		b.used += w.n
		w.granted = true
		close(w.ready)
		b.waiters = append(b.waiters[:first], b.waiters[first+1:]...)
	}
}

// pendingBytes counts the reply bytes one session holds: reserved for
// replies being built, encoded or queued but not written.
type pendingBytes struct {
	held    atomic.Int64
	mu      sync.Mutex
	drained chan struct{} // closed when held shrinks; made by a waiter
}

// changed returns a channel closed the next time the session's bytes
// shrink.
func (p *pendingBytes) changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drained == nil {
		p.drained = make(chan struct{})
	}
	return p.drained
}

// shrink gives n bytes back and wakes the waiters.
func (p *pendingBytes) shrink(n int64) {
	p.held.Add(-n)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drained != nil {
		close(p.drained)
		p.drained = nil
	}
}

// reserve takes n more reply bytes for a request of the session that holds
// own of them already, waiting until n fits in MaxPendingBytes or the
// session holds nothing but own (so that a reply larger than the bound goes
// through alone), then for the process budget.
func (s *session) reserve(ctx context.Context, n, own int64) error {
	max := int64(s.opts.MaxPendingBytes)
	waited := false
	for {
		changed := s.pending.changed()
		h := s.pending.held.Load()
		if h == own || h+n <= max {
			if s.pending.held.CompareAndSwap(h, h+n) {
				break
			}
			continue
		}
		if !waited {
			waited = true
			s.opts.Metrics.BudgetWaited()
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.ctx.Done():
			return ErrSessionClosed
		}
	}
	if s.opts.Memory == nil {
		return nil
	}
	if err := s.opts.Memory.acquire(ctx, s.ctx.Done(), n, own, &s.pending.held); err != nil {
		s.pending.shrink(n)
		return err
	}
	return nil
}

// charge adds n reply bytes (negative: gives them back) to the session and
// the process budget without waiting: the bytes exist already.
func (s *session) charge(n int64) {
	if n == 0 {
		return
	}
	if n > 0 {
		s.pending.held.Add(n)
	} else {
		s.pending.shrink(-n)
	}
	if s.opts.Memory != nil {
		s.opts.Memory.charge(n)
	}
}

// atPendingBound reports whether the session holds its MaxPendingBytes.
func (s *session) atPendingBound() bool {
	return s.pending.held.Load() >= int64(s.opts.MaxPendingBytes)
}

// waitForPendingRoom blocks the reader while the session holds its
// MaxPendingBytes, so that a client that does not read its replies sends no
// more requests; it returns false once the session is over.
func (s *session) waitForPendingRoom() bool {
	if !s.atPendingBound() {
		return true // without making the channel of changed
	}
	for {
		changed := s.pending.changed()
		if !s.atPendingBound() {
			return true
		}
		select {
		case <-changed:
		case <-s.ctx.Done():
			return false
		}
	}
}
