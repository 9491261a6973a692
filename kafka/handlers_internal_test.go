package kafka

import (
	"errors"
	"testing"

	"github.com/envoy-pubsub/gateway/pubsub"
)

// TestRegisterAllocatesOnlyTheSessionsState: binding a session's Kafka
// commands allocates its handlers and its broker lane, and nothing per
// command (a function value per command cost every session 112 bytes).
func TestRegisterAllocatesOnlyTheSessionsState(t *testing.T) {
	k := &Cluster{}
	mux := pubsub.NewMux()
	if n := testing.AllocsPerRun(100, func() { Register(mux, k, Policy{}) }); n != 2 {
		t.Fatalf("Register allocates %v times, want 2 (handlers and lane)", n)
	}
}

// TestSubscriptionsAreFoundBySequenceAndBounded: a session's subscriptions
// are found and removed by the sequence of their request, a sequence is
// taken once, and their partitions stay within MaxSubscribedPartitions.
func TestSubscriptionsAreFoundBySequenceAndBounded(t *testing.T) {
	var subs subscriptions
	a, b, c := &subscription{partitions: 1}, &subscription{partitions: 2}, &subscription{partitions: MaxSubscribedPartitions - 3}
	for seq, sub := range map[int64]*subscription{1: a, 2: b, 3: c} {
		if err := subs.add(seq, sub); err != nil {
			t.Fatalf("add %d: %v", seq, err)
		}
	}
	if err := subs.add(2, &subscription{partitions: 0}); !errors.Is(err, ErrDuplicateSubscription) {
		t.Fatalf("second add of 2: %v, want %v", err, ErrDuplicateSubscription)
	}
	if err := subs.add(4, &subscription{partitions: 1}); !errors.Is(err, ErrTooManySubscriptions) {
		t.Fatalf("add past the bound: %v, want %v", err, ErrTooManySubscriptions)
	}
	if got := subs.remove(2); got != b {
		t.Fatalf("remove 2: %p, want %p", got, b)
	}
	if got := subs.remove(2); got != nil {
		t.Fatalf("remove 2 again: %p, want nil", got)
	}
	if err := subs.add(4, &subscription{partitions: 2}); err != nil {
		t.Fatalf("add within the room remove 2 left: %v", err)
	}
	if got := subs.remove(1); got != a {
		t.Fatalf("remove 1: %p, want %p", got, a)
	}
	if got := subs.remove(3); got != c {
		t.Fatalf("remove 3: %p, want %p", got, c)
	}
	if subs.partitions != 2 || len(subs.live) != 1 {
		t.Fatalf("left %d partitions in %d subscriptions, want 2 in 1", subs.partitions, len(subs.live))
	}
}
