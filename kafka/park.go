package kafka

import (
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// changeWaiters holds the functions parked on change channels, with no
// goroutine waiting for them: the subscribers of a partition that are all
// at the end of its log park on its reader's one change channel, and the
// reader, which closes the channel, runs them (fire) or hands them to a
// waker (fireLater). A channel closed by anything else would leave its
// functions parked: every closer of a channel that functions park on
// fires it.
//
// fire runs a change's functions on the closer's own goroutine: a record
// reaches the parked subscribers of its partition without a goroutine
// hand-off (a futex wake-up and a trip through the scheduler, tens of
// microseconds on a busy machine). Wakers run what is not run there: the
// shares of a set larger than wakeChunk, and fireLater's sets. They are
// goroutines that take the next job when they are done with one, rather
// than one new goroutine per job, whose stack would grow again (by
// copying) on every change; a waker ends when it had nothing to do for
// wakerLinger.
type changeWaiters struct {
	mu     sync.Mutex
	byChan map[<-chan struct{}][]*func() // in the order they were parked
	idle   chan wakeJob                  // idle wakers receive their next job
}

// wakeJob is a waker's work: run fns, and give the list back to wakeLists
// if recycle.
type wakeJob struct {
	fns     []*func()
	recycle bool
}

// parked is the process's registry: the channels it keys on are unique.
var parked = changeWaiters{idle: make(chan wakeJob)}

// wakerLinger is how long a waker with nothing to do waits for a job
// before it ends.
const wakerLinger = 100 * time.Millisecond

// wakeLists keeps the function lists of changes that ran, for the channels
// that follow: the subscribers of a partition park again on its next
// change channel, as many as before, so a channel takes a list of the
// right size rather than growing one for every change.
var wakeLists = sync.Pool{New: func() any { return new([]*func()) }}

// add parks fn on ch: it runs once when ch's closer fires ch, unless
// remove takes it back first. fn must return quickly (it starts a
// goroutine to do work that waits). A caller that may have missed the
// fire (ch was closed before add) checks ch after add and takes fn back.
func (c *changeWaiters) add(ch <-chan struct{}, fn *func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fns, ok := c.byChan[ch]
	if !ok {
		if c.byChan == nil {
			c.byChan = make(map[<-chan struct{}][]*func())
		}
		fns = *wakeLists.Get().(*[]*func())
	}
	c.byChan[ch] = append(fns, fn)
}

// remove takes fn back from ch; it reports whether fn was still parked
// (false: it ran or is about to).
func (c *changeWaiters) remove(ch <-chan struct{}, fn *func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	fns := c.byChan[ch]
	i := slices.Index(fns, fn)
	if i < 0 {
		return false
	}
	fns = slices.Delete(fns, i, i+1)
	if len(fns) == 0 {
		delete(c.byChan, ch)
		recycle(fns)
		return true
	}
	c.byChan[ch] = fns
	return true
}

// take removes and returns the functions parked on ch, in a random turn:
// those parked first would always run first (each parks again as soon as
// it ran), so the turn starts at a random one, and no subscriber is
// always served last.
func (c *changeWaiters) take(ch <-chan struct{}) []*func() {
	c.mu.Lock()
	fns := c.byChan[ch]
	delete(c.byChan, ch)
	c.mu.Unlock()
	if len(fns) > 1 {
		rotate(fns, rand.IntN(len(fns)))
	}
	return fns
}

// fire runs the functions parked on ch, which its caller closed: the
// first wakeChunk on the calling goroutine, the rest on wakers. When
// wanted reports true (it is asked after every handOffEvery functions),
// the caller has other work (the shared reader, records of the next
// change) and hands the functions not run yet to a waker. The caller must
// hold no lock that a parked function takes.
func (c *changeWaiters) fire(ch <-chan struct{}, wanted func() bool) {
	fns := c.take(ch)
	if len(fns) == 0 {
		return
	}
	first, shared := c.share(fns)
	if rest := runUntil(first, wanted); len(rest) > 0 {
		c.start(wakeJob{fns: rest}) // a part of first: not recycled
		return
	}
	if !shared {
		recycle(first)
	}
}

// handOffEvery is how many functions fire runs between two questions
// whether its caller is wanted elsewhere.
const handOffEvery = 8

// runUntil runs fns until wanted reports true, asked after every
// handOffEvery of them, and returns those it did not run. A panic in one
// is logged and stops the rest of fns.
func runUntil(fns []*func(), wanted func() bool) (rest []*func()) {
	for len(fns) > 0 {
		n := min(len(fns), handOffEvery)
		runAll(fns[:n])
		fns = fns[n:]
		if len(fns) > 0 && wanted() {
			return fns
		}
	}
	return nil
}

// fireLater hands the functions parked on ch, which its caller closed, to
// wakers, without waiting: for callers that hold locks.
func (c *changeWaiters) fireLater(ch <-chan struct{}) {
	fns := c.take(ch)
	if len(fns) == 0 {
		return
	}
	first, shared := c.share(fns)
	c.start(wakeJob{fns: first, recycle: !shared})
}

// share starts wakers for all of fns but the first wakeChunk, which it
// returns: many waiters share the cores. shared reports whether it
// started any (then the list must not be recycled: they still read it).
func (c *changeWaiters) share(fns []*func()) (first []*func(), shared bool) {
	shared = len(fns) > wakeChunk
	for len(fns) > wakeChunk {
		c.start(wakeJob{fns: fns[len(fns)-wakeChunk:]})
		fns = fns[:len(fns)-wakeChunk]
	}
	return fns, shared
}

// start gives job to an idle waker, or to a new one.
func (c *changeWaiters) start(job wakeJob) {
	select {
	case c.idle <- job:
	default:
		go c.waker(job)
	}
}

// waker does job, then the jobs given to it until it has been idle for
// wakerLinger.
func (c *changeWaiters) waker(job wakeJob) {
	var linger *time.Timer
	for {
		runAll(job.fns)
		if job.recycle {
			recycle(job.fns)
		}
		if linger == nil {
			linger = time.NewTimer(wakerLinger)
		} else {
			linger.Reset(wakerLinger)
		}
		select {
		case job = <-c.idle:
		case <-linger.C:
			return
		}
	}
}

// recycle gives a list that nothing refers to any more to the next
// channel.
func recycle(fns []*func()) {
	clear(fns)
	fns = fns[:0]
	wakeLists.Put(&fns)
}

// rotate moves the first k elements of s to its end, in order.
func rotate[E any](s []E, k int) {
	slices.Reverse(s[:k])
	slices.Reverse(s[k:])
	slices.Reverse(s)
}

// wakeChunk is how many parked functions one goroutine runs when their
// channel is fired.
const wakeChunk = 128

// runAll runs fns; a panic in one is logged and stops the rest of fns only.
func runAll(fns []*func()) {
	defer func() {
		if p := recover(); p != nil {
			slog.Error("kafka: panic waking parked subscriptions", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	for _, fn := range fns {
		(*fn)()
	}
}
