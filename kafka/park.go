package kafka

import (
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"slices"
	"sync"
	"time"
)

// changeWaiters runs the functions parked on a channel when it closes, with
// one goroutine per channel however many wait on it: the subscribers of a
// partition that are all at the end of its log wait on its reader's one
// change channel, not with a goroutine (and its stack) each.
//
// The goroutines are wakers that take the next job when they are done
// with one, rather than one new goroutine per channel: the subscribers of
// a partition park again on its next change channel while its waker still
// runs them, and another waker, idle since it ran the change before, waits
// for it. A new goroutine would grow its stack (copying it) on every
// change; a waker ends when it had nothing to do for wakerLinger.
type changeWaiters struct {
	mu     sync.Mutex
	byChan map[<-chan struct{}]*waitSet
	idle   chan wakeJob // idle wakers receive their next job
}

// waitSet is the functions parked on one channel.
type waitSet struct {
	fns  []*func()     // in the order they were parked
	gone chan struct{} // closed when the last function was removed
}

// wakeJob is a waker's work: wait for ch and run set's functions, or, when
// set is nil, run fns (a share of a large set).
type wakeJob struct {
	ch  <-chan struct{}
	set *waitSet
	fns []*func()
}

// parked is the process's registry: the channels it keys on are unique.
var parked = changeWaiters{idle: make(chan wakeJob)}

// wakerLinger is how long a waker with nothing to do waits for a job
// before it ends.
const wakerLinger = 100 * time.Millisecond

// wakeLists keeps the function lists of waits that ran, for the sets of
// the channels that follow: the subscribers of a partition park again on
// its next change channel, as many as before, so a set takes a list of the
// right size rather than growing one for every change.
var wakeLists = sync.Pool{New: func() any { return new([]*func()) }}

// add parks fn on ch: it runs once, on a waker, when ch closes, unless
// remove takes it back first. fn must return quickly (it starts a
// goroutine to do its work).
func (c *changeWaiters) add(ch <-chan struct{}, fn *func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	set := c.byChan[ch]
	if set == nil {
		if c.byChan == nil {
			c.byChan = make(map[<-chan struct{}]*waitSet)
		}
		set = &waitSet{fns: *wakeLists.Get().(*[]*func()), gone: make(chan struct{})}
		c.byChan[ch] = set
		c.start(wakeJob{ch: ch, set: set})
	}
	set.fns = append(set.fns, fn)
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
		c.do(job)
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

// do runs one job; a panic is logged and ends the job only.
func (c *changeWaiters) do(job wakeJob) {
	defer func() {
		if p := recover(); p != nil {
			slog.Error("kafka: panic waking parked subscriptions", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	if job.set == nil {
		runAll(job.fns)
		return
	}
	c.wait(job.ch, job.set)
}

// remove takes fn back from ch; it reports whether fn was still parked
// (false: it ran or is about to).
func (c *changeWaiters) remove(ch <-chan struct{}, fn *func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	set := c.byChan[ch]
	if set == nil {
		return false
	}
	i := slices.Index(set.fns, fn)
	if i < 0 {
		return false
	}
	set.fns = slices.Delete(set.fns, i, i+1)
	if len(set.fns) == 0 {
		delete(c.byChan, ch)
		close(set.gone)
	}
	return true
}

// wait runs the functions of set when ch closes; it returns without
// running them when all were removed (a channel that may never close).
func (c *changeWaiters) wait(ch <-chan struct{}, set *waitSet) {
	select {
	case <-ch:
	case <-set.gone:
		return
	}
	c.mu.Lock()
	if c.byChan[ch] == set {
		delete(c.byChan, ch)
	}
	fns := set.fns
	set.fns = nil
	c.mu.Unlock()
	if len(fns) == 0 {
		return // all were removed as ch closed
	}
	// The functions run in turn: those parked first would always run
	// first (each parks again as soon as it ran), so the turn starts at
	// a random one, and no subscriber is always served last.
	rotate(fns, rand.IntN(len(fns)))
	// Many waiters share the cores: this waker runs the first wakeChunk,
	// others the rest.
	shared := len(fns) > wakeChunk
	for len(fns) > wakeChunk {
		c.start(wakeJob{fns: fns[len(fns)-wakeChunk:]})
		fns = fns[:len(fns)-wakeChunk]
	}
	runAll(fns)
	if !shared {
		// Nothing refers to the list any more: the next set takes it.
		clear(fns)
		fns = fns[:0]
		wakeLists.Put(&fns)
	}
}

// rotate moves the first k elements of s to its end, in order.
func rotate[E any](s []E, k int) {
	slices.Reverse(s[:k])
	slices.Reverse(s[k:])
	slices.Reverse(s)
}

// wakeChunk is how many parked functions one goroutine runs when their
// channel closes.
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
