package kafka

import (
	"log/slog"
	"runtime/debug"
	"sync"
)

// changeWaiters runs the functions parked on a channel when it closes, with
// one goroutine per channel however many wait on it: the subscribers of a
// partition that are all at the end of its log wait on its reader's one
// change channel, not with a goroutine (and its stack) each.
type changeWaiters struct {
	mu     sync.Mutex
	byChan map[<-chan struct{}]*waitSet
}

// waitSet is the functions parked on one channel.
type waitSet struct {
	fns  map[*func()]struct{}
	gone chan struct{} // closed when the last function was removed
}

// parked is the process's registry: the channels it keys on are unique.
var parked changeWaiters

// add parks fn on ch: it runs once, on the channel's goroutine, when ch
// closes, unless remove takes it back first. fn must return quickly (it
// starts a goroutine to do its work).
func (c *changeWaiters) add(ch <-chan struct{}, fn *func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	set := c.byChan[ch]
	if set == nil {
		if c.byChan == nil {
			c.byChan = make(map[<-chan struct{}]*waitSet)
		}
		set = &waitSet{fns: make(map[*func()]struct{}), gone: make(chan struct{})}
		c.byChan[ch] = set
		go c.wait(ch, set)
	}
	set.fns[fn] = struct{}{}
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
	if _, ok := set.fns[fn]; !ok {
		return false
	}
	delete(set.fns, fn)
	if len(set.fns) == 0 {
		delete(c.byChan, ch)
		close(set.gone)
	}
	return true
}

// wait runs the functions of set when ch closes; it ends without running
// them when all were removed (a channel that may never close).
func (c *changeWaiters) wait(ch <-chan struct{}, set *waitSet) {
	defer func() {
		if p := recover(); p != nil {
			slog.Error("kafka: panic waking parked subscriptions", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	select {
	case <-ch:
	case <-set.gone:
		return
	}
	c.mu.Lock()
	if c.byChan[ch] == set {
		delete(c.byChan, ch)
	}
	fns := make([]*func(), 0, len(set.fns))
	for fn := range set.fns {
		fns = append(fns, fn)
	}
	set.fns = nil
	c.mu.Unlock()
	// Many waiters share the cores: this goroutine runs the first
	// wakeChunk, others the rest.
	for len(fns) > wakeChunk {
		go runAll(fns[len(fns)-wakeChunk:])
		fns = fns[:len(fns)-wakeChunk]
	}
	runAll(fns)
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
