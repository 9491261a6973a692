package metrics

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// MaxTallyPartitions bounds the partitions a Tally names; a session that
// touches more is counted, not listed, so that its log line stays short.
const MaxTallyPartitions = 64

// Tally is what one session touched and was sent, for the line logged when
// it ends: the session server puts one in the session's context
// (WithTally) and the handlers add to it (TallyFrom). The zero value is
// ready; all methods are safe from any goroutine and do nothing on nil.
type Tally struct {
	mu      sync.Mutex
	parts   []topicPartition // at most MaxTallyPartitions: a slice costs an idle session less than a map
	more    int
	records atomic.Int64
}

type topicPartition struct {
	topic     string
	partition int32
}

// Touch records that the session read or wrote topic/partition.
func (t *Tally) Touch(topic string, partition int32) {
	if t == nil {
		return
	}
	tp := topicPartition{topic, partition}
	t.mu.Lock()
	defer t.mu.Unlock()
	if slices.Contains(t.parts, tp) {
		return
	}
	if len(t.parts) >= MaxTallyPartitions {
		t.more++
		return
	}
	t.parts = append(t.parts, tp)
}

// Sent adds n records sent to the client.
func (t *Tally) Sent(n int) {
	if t != nil {
		t.records.Add(int64(n))
	}
}

// Records returns the records sent to the client.
func (t *Tally) Records() int64 {
	if t == nil {
		return 0
	}
	return t.records.Load()
}

// Partitions returns the touched partitions as sorted "topic/partition"
// names, and how many more were touched beyond MaxTallyPartitions.
func (t *Tally) Partitions() (names []string, more int) {
	if t == nil {
		return nil, 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	names = make([]string, 0, len(t.parts))
	for _, tp := range t.parts {
		names = append(names, tp.topic+"/"+strconv.FormatInt(int64(tp.partition), 10))
	}
	slices.Sort(names)
	return names, t.more
}

type tallyKey struct{}

// WithTally returns ctx carrying t.
func WithTally(ctx context.Context, t *Tally) context.Context {
	return context.WithValue(ctx, tallyKey{}, t)
}

// TallyFrom returns the Tally of ctx, or nil (whose methods do nothing).
func TallyFrom(ctx context.Context) *Tally {
	t, _ := ctx.Value(tallyKey{}).(*Tally)
	return t
}
