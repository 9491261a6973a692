package kafka

import (
	"bytes"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newWaiters returns a registry of its own, apart from the process's.
func newWaiters() *changeWaiters { return &changeWaiters{idle: make(chan wakeJob)} }

// notWanted is fire's question for a caller that has nothing else to do.
func notWanted() bool { return false }

// fireHere returns c.fire for a caller that has nothing else to do.
func fireHere(c *changeWaiters) func(<-chan struct{}) {
	return func(ch <-chan struct{}) { c.fire(ch, notWanted) }
}

// goroutineID returns the id of the calling goroutine, from its stack
// trace's first line ("goroutine 42 [running]:").
func goroutineID(t *testing.T) uint64 {
	var buf [64]byte
	line := buf[:runtime.Stack(buf[:], false)]
	line = bytes.TrimPrefix(line, []byte("goroutine "))
	id, err := strconv.ParseUint(string(line[:bytes.IndexByte(line, ' ')]), 10, 64)
	if err != nil {
		t.Errorf("goroutine id of %q: %v", buf, err)
	}
	return id
}

// TestParkedFunctionsRunOnceWhenTheirChannelCloses parks more functions on
// one channel than one waker runs, takes two back, and closes the channel:
// every other function runs exactly once, those taken back never.
func TestParkedFunctionsRunOnceWhenTheirChannelCloses(t *testing.T) {
	c := newWaiters()
	ch := make(chan struct{})
	const n = 3*wakeChunk + 5
	var runs [n]atomic.Int32
	fns := make([]*func(), n)
	for i := range fns {
		f := func() { runs[i].Add(1) }
		fns[i] = &f
		c.add(ch, fns[i])
	}
	if !c.remove(ch, fns[7]) || !c.remove(ch, fns[n-1]) {
		t.Fatal("remove did not find parked functions")
	}
	if c.remove(ch, fns[7]) {
		t.Fatal("a function was removed twice")
	}
	close(ch)
	c.fire(ch, notWanted)
	waitFor(t, func() bool { // the shares beyond wakeChunk run on wakers
		for i := range runs {
			if i != 7 && i != n-1 && runs[i].Load() == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(10 * time.Millisecond) // room for a wrong second run
	for i := range runs {
		want := int32(1)
		if i == 7 || i == n-1 {
			want = 0
		}
		if got := runs[i].Load(); got != want {
			t.Errorf("function %d ran %d times, want %d", i, got, want)
		}
	}
	if c.remove(ch, fns[0]) {
		t.Error("a function that ran was removed")
	}
}

// TestAChannelWhoseFunctionsWereAllRemovedIsForgotten: a channel that never
// closes holds nothing once its functions were taken back, and functions
// parked on other channels still run.
func TestAChannelWhoseFunctionsWereAllRemovedIsForgotten(t *testing.T) {
	c := newWaiters()
	never := make(chan struct{})
	f := func() { t.Error("a removed function ran") }
	c.add(never, &f)
	if !c.remove(never, &f) {
		t.Fatal("remove did not find the parked function")
	}
	c.mu.Lock()
	left := len(c.byChan)
	c.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d channels still registered", left)
	}
	ch := make(chan struct{})
	ran := make(chan struct{})
	g := func() { close(ran) }
	c.add(ch, &g)
	close(ch)
	c.fireLater(ch)
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("a function parked after another channel was forgotten did not run")
	}
}

// parkChain parks n functions that, like subscriptions at the end of a
// partition's log, park again on the next change channel each time they
// run; it closes changes channels one after the other, each once every
// function parked on it ran, and fires each with fire (c.fire or
// c.fireLater). It returns the ids of the goroutines that ran the
// functions, with the number of runs of each, and the index of each
// change's first function.
func parkChain(t *testing.T, c *changeWaiters, fire func(<-chan struct{}), n, changes int) (runners map[uint64]int, firsts []int) {
	var (
		mu    sync.Mutex
		chans = []chan struct{}{make(chan struct{})}
		ran   = make([]int, changes) // functions run per change
	)
	runners = map[uint64]int{}
	current := func() (chan struct{}, int) {
		mu.Lock()
		defer mu.Unlock()
		return chans[len(chans)-1], len(chans) - 1
	}
	fns := make([]*func(), n)
	for i := range fns {
		f := func() {
			_, change := current()
			id := goroutineID(t)
			mu.Lock()
			if ran[change-1] == 0 {
				firsts = append(firsts, i)
			}
			ran[change-1]++
			runners[id]++
			mu.Unlock()
			next, _ := current()
			c.add(next, fns[i])
		}
		fns[i] = &f
		c.add(chans[0], fns[i])
	}
	for change := 1; change <= changes; change++ {
		mu.Lock()
		closing := chans[len(chans)-1]
		chans = append(chans, make(chan struct{}))
		mu.Unlock()
		close(closing)
		fire(closing)
		waitFor(t, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return ran[change-1] == n
		})
	}
	last, _ := current()
	for _, fn := range fns {
		c.remove(last, fn)
	}
	return runners, firsts
}

// TestAChangeRunsOnTheGoroutineThatFiresIt: the functions parked on a
// change channel, up to wakeChunk of them, run on the goroutine that fires
// it (the shared reader's, for subscriptions at the end of its partition),
// with no goroutine hand-off; before, a waker goroutine waiting for the
// channel ran them.
func TestAChangeRunsOnTheGoroutineThatFiresIt(t *testing.T) {
	c := newWaiters()
	const changes = 20
	runners, _ := parkChain(t, c, fireHere(c), wakeChunk, changes)
	self := goroutineID(t)
	if len(runners) != 1 || runners[self] != wakeChunk*changes {
		t.Fatalf("%d changes of %d functions ran on goroutines %v (run counts), want all on the firing goroutine %d", changes, wakeChunk, runners, self)
	}
}

// TestChangesAreRunByWakersThatLast: what runs on wakers (changes handed
// over with fireLater, and the shares of a change larger than wakeChunk)
// runs change after change on the same few goroutines (a new goroutine
// per change grows its stack anew, copying it), not on new goroutines per
// change.
func TestChangesAreRunByWakersThatLast(t *testing.T) {
	const changes = 40
	for _, tc := range []struct {
		name string
		n    int
		fire func(*changeWaiters) func(<-chan struct{})
	}{
		{"fireLater", 10, func(c *changeWaiters) func(<-chan struct{}) { return c.fireLater }},
		{"fire, shares", 2*wakeChunk + 5, fireHere},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newWaiters()
			runners, _ := parkChain(t, c, tc.fire(c), tc.n, changes)
			// A few wakers take turns; a waker that lingered too long on a
			// busy machine ends and a new one takes over, rarely.
			if len(runners) > changes/4 {
				t.Fatalf("%d changes were run by %d goroutines", changes, len(runners))
			}
		})
	}
}

// TestEveryParkedFunctionGetsTurnsFirst: functions that park again in the
// order they ran are not run in that same order at every change (the
// first parked would always be served first, the last always last).
func TestEveryParkedFunctionGetsTurnsFirst(t *testing.T) {
	c := newWaiters()
	_, firsts := parkChain(t, c, fireHere(c), 10, 40)
	distinct := map[int]bool{}
	for _, i := range firsts {
		distinct[i] = true
	}
	if len(distinct) < 3 {
		t.Fatalf("over 40 changes only functions %v ran first", firsts)
	}
}

// TestAFiringGoroutineThatIsWantedHandsTheRestToAWaker: once fire's
// caller is wanted elsewhere (the shared reader has records of the next
// poll), the functions it did not run yet run on a waker, each once.
func TestAFiringGoroutineThatIsWantedHandsTheRestToAWaker(t *testing.T) {
	c := newWaiters()
	ch := make(chan struct{})
	const n = 5 * handOffEvery
	var (
		mu      sync.Mutex
		runners = make([]uint64, n)
		runs    = make([]int, n)
	)
	for i := range n {
		f := func() {
			id := goroutineID(t)
			mu.Lock()
			runners[i] = id
			runs[i]++
			mu.Unlock()
		}
		c.add(ch, &f)
	}
	asked := 0
	close(ch)
	c.fire(ch, func() bool { asked++; return asked == 2 }) // wanted at the second question
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return !slices.Contains(runs, 0)
	})
	time.Sleep(10 * time.Millisecond) // room for a wrong second run
	self := goroutineID(t)
	mu.Lock()
	defer mu.Unlock()
	here := 0
	for i := range n {
		if runs[i] != 1 {
			t.Errorf("function %d ran %d times", i, runs[i])
		}
		if runners[i] == self {
			here++
		}
	}
	if here != 2*handOffEvery {
		t.Errorf("%d of %d functions ran on the firing goroutine, want the %d before it was wanted", here, n, 2*handOffEvery)
	}
}
