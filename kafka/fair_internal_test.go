package kafka

import (
	"context"
	"testing"
	"time"
)

// TestBrokerTurnsGoRoundRobinBetweenSessions: with the cluster's turns all
// taken, a session that queued many requests gets one turn, then the
// session that queued one after it, not all of its own first.
func TestBrokerTurnsGoRoundRobinBetweenSessions(t *testing.T) {
	var turns brokerTurns
	ctx := context.Background()
	var releases []func()
	for range maxBrokerRequests {
		release, err := turns.wait(withLane(ctx, turns.newLane()))
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	busy, other := turns.newLane(), turns.newLane()
	order := make(chan string, 4)
	queue := func(l *brokerLane, name string) {
		queued := len(l.waiting)
		go func() {
			release, err := turns.wait(withLane(ctx, l))
			if err != nil {
				t.Error(err)
				return
			}
			order <- name
			release()
		}()
		waitFor(t, func() bool {
			turns.mu.Lock()
			defer turns.mu.Unlock()
			return len(l.waiting) == queued+1
		})
	}
	for range 3 {
		queue(busy, "busy")
	}
	queue(other, "other")
	// Free one turn at a time; each granted request ends at once.
	releases[0]()
	if got := <-order; got != "busy" {
		t.Fatalf("first turn went to %s", got)
	}
	if got := <-order; got != "other" {
		t.Fatalf("second turn went to %s, want the other session before the busy one's second request", got)
	}
	for range 2 {
		if got := <-order; got != "busy" {
			t.Fatalf("then %s", got)
		}
	}
	for _, r := range releases[1:] {
		r()
	}
	if turns.running != 0 || len(turns.ring) != 0 {
		t.Fatalf("%d running, %d lanes queued after every turn ended", turns.running, len(turns.ring))
	}
}

func TestBrokerTurnGivenUpWhenTheContextEnds(t *testing.T) {
	var turns brokerTurns
	lane := turns.newLane()
	release, err := turns.wait(withLane(context.Background(), lane))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(withLane(context.Background(), lane), 20*time.Millisecond)
	defer cancel()
	if _, err := turns.wait(ctx); err != context.DeadlineExceeded {
		t.Fatalf("second request of a session at its bound: %v, want it to wait", err)
	}
	release()
	if len(lane.waiting) != 0 || turns.running != 0 {
		t.Fatalf("%d waiting, %d running after the waiter gave up", len(lane.waiting), turns.running)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}
