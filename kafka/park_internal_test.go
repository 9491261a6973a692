package kafka

import (
	"bytes"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newWaiters returns a registry of its own, apart from the process's.
func newWaiters() *changeWaiters { return &changeWaiters{idle: make(chan wakeJob)} }

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
	waitFor(t, func() bool {
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
// closes holds nothing once its functions were taken back, and its waker is
// free for other channels.
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
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("a function parked after another channel was forgotten did not run")
	}
}

// parkChain parks n functions that, like subscriptions at the end of a
// partition's log, park again on the next change channel each time they
// run; it closes changes channels one after the other, each once every
// function parked on it, and returns the ids of the goroutines that ran
// each change's first function, and the index of that function.
func parkChain(t *testing.T, c *changeWaiters, n, changes int) (runners []uint64, firsts []int) {
	var (
		mu    sync.Mutex
		chans = []chan struct{}{make(chan struct{})}
		ran   = make([]int, changes) // functions run per change
	)
	current := func() (chan struct{}, int) {
		mu.Lock()
		defer mu.Unlock()
		return chans[len(chans)-1], len(chans) - 1
	}
	fns := make([]*func(), n)
	for i := range fns {
		f := func() {
			_, change := current()
			mu.Lock()
			if ran[change-1] == 0 {
				runners = append(runners, goroutineID(t))
				firsts = append(firsts, i)
			}
			ran[change-1]++
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

// TestChangesAreRunByWakersThatLast: subscriptions that park again at once
// are woken change after change by the same few goroutines (a new
// goroutine per change grows its stack anew, copying it), not by one new
// goroutine per change.
func TestChangesAreRunByWakersThatLast(t *testing.T) {
	const changes = 40
	runners, _ := parkChain(t, newWaiters(), 10, changes)
	distinct := map[uint64]bool{}
	for _, id := range runners {
		distinct[id] = true
	}
	// Two wakers take turns; a waker that lingered too long on a busy
	// machine ends and a new one takes over, rarely.
	if len(distinct) > changes/4 {
		t.Fatalf("%d changes were run by %d goroutines", changes, len(distinct))
	}
}

// TestEveryParkedFunctionGetsTurnsFirst: functions that park again in the
// order they ran are not run in that same order at every change (the
// first parked would always be served first, the last always last).
func TestEveryParkedFunctionGetsTurnsFirst(t *testing.T) {
	_, firsts := parkChain(t, newWaiters(), 10, 40)
	distinct := map[int]bool{}
	for _, i := range firsts {
		distinct[i] = true
	}
	if len(distinct) < 3 {
		t.Fatalf("over 40 changes only functions %v ran first", firsts)
	}
}
