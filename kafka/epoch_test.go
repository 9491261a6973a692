package kafka_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/internal/testkit"
)

// TestLeaderEpochFencesFetchesAndTheCache: broker fetches name the leader
// epoch metadata knows, and a new leader epoch (a leader change, after
// which the log may have been truncated) drops the records cached under the
// old one: the next fetch asks the new leader. kfake cannot truncate a log,
// so the test shows the fencing and the drop, not a truncated log.
func TestLeaderEpochFencesFetchesAndTheCache(t *testing.T) {
	f := newFixture(t, "")
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, testkit.Numbered(3))
	var (
		mu     sync.Mutex
		epochs []int32 // CurrentLeaderEpoch of each fetch of t/0 from offset 0
	)
	f.kafka.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		f.kafka.KeepControl()
		for _, rt := range req.(*kmsg.FetchRequest).Topics {
			for _, rp := range rt.Partitions {
				if rp.Partition == 0 && rp.FetchOffset == 0 {
					mu.Lock()
					epochs = append(epochs, rp.CurrentLeaderEpoch)
					mu.Unlock()
				}
			}
		}
		return nil, nil, false // kfake answers as usual
	})
	fetched := func() []int32 {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(epochs)
	}

	if msgs, err := f.c.Fetch(ctx(t), "t", 0, 0); err != nil || len(msgs) != 3 {
		t.Fatalf("first fetch: %d records, %v", len(msgs), err)
	}
	epoch := f.kafka.PartitionInfo("t", 0).Epoch
	if got := fetched(); len(got) != 1 || got[0] != epoch {
		t.Fatalf("broker fetches with leader epochs %v, want one with the partition's epoch %d", got, epoch)
	}
	if msgs, err := f.c.Fetch(ctx(t), "t", 0, 0); err != nil || len(msgs) != 3 {
		t.Fatalf("second fetch: %d records, %v", len(msgs), err)
	}
	if got := fetched(); len(got) != 1 {
		t.Fatalf("the second fetch asked the broker (epochs %v), want it served by the cache", got)
	}

	if err := f.kafka.MoveTopicPartition("t", 0, (f.kafka.LeaderFor("t", 0)+1)%3); err != nil {
		t.Fatal(err)
	}
	moved := f.kafka.PartitionInfo("t", 0).Epoch
	if moved == epoch {
		t.Fatalf("the leader epoch stayed %d after the move", epoch)
	}
	// Within a check interval (100 ms) the cache sees the new epoch.
	deadline := time.Now().Add(3 * time.Second)
	for len(fetched()) == 1 && time.Now().Before(deadline) {
		if msgs, err := f.c.Fetch(ctx(t), "t", 0, 0); err != nil || len(msgs) != 3 {
			t.Fatalf("fetch after the leader change: %d records, %v", len(msgs), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := fetched()
	if len(got) < 2 || got[len(got)-1] != moved {
		t.Fatalf("after the leader change the broker was asked with epochs %v, want the last with the new epoch %d (the old epoch's records dropped)", got, moved)
	}
}
