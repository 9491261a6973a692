package metrics

import (
	"context"
	"slices"
	"testing"
)

func TestTallyNamesItsPartitionsSortedAndCountsTheRest(t *testing.T) {
	var tally Tally
	tally.Touch("orders", 1)
	tally.Touch("audit", 0)
	tally.Touch("orders", 1)
	tally.Sent(3)
	tally.Sent(4)
	names, more := tally.Partitions()
	if !slices.Equal(names, []string{"audit/0", "orders/1"}) || more != 0 || tally.Records() != 7 {
		t.Fatalf("partitions %v (+%d), records %d", names, more, tally.Records())
	}
	for p := range int32(MaxTallyPartitions + 5) {
		tally.Touch("many", p)
	}
	names, more = tally.Partitions()
	if len(names) != MaxTallyPartitions || more != 7 {
		t.Fatalf("%d partitions named and %d more, want %d and 7", len(names), more, MaxTallyPartitions)
	}
}

func TestAContextWithoutTallyGivesANilTallyThatDoesNothing(t *testing.T) {
	tally := TallyFrom(context.Background())
	tally.Touch("t", 0)
	tally.Sent(1)
	if names, more := tally.Partitions(); names != nil || more != 0 || tally.Records() != 0 {
		t.Fatalf("nil tally: %v %d %d", names, more, tally.Records())
	}
	var own Tally
	if TallyFrom(WithTally(context.Background(), &own)) != &own {
		t.Fatal("the context does not carry the tally")
	}
}
