package kafka

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Record scopes and client filters on the read path. A reader whose View
// does not see every record is given only the records it sees, and
// next_offset carries it past the others: a fetch reads on past records it
// does not see instead of answering with nothing, a subscription moves its
// cursor past them and tells the client its position now and then, and a
// group member pushes only what it sees. Readers that see every record take
// the paths they always took: no record is filtered or copied for them.

const (
	// maxInvisibleReads bounds the reads of one fetch whose records its
	// view does not see: after as many, the reply goes empty, with
	// next_offset past them, so that a long run of records the client
	// does not see costs it a few prompt round trips, never a wait.
	maxInvisibleReads = 8
	// positionPushInterval is the least time between two pushes that carry
	// only next_offset, which a subscription whose view sees none of the
	// new records sends so that a client resuming from its position does
	// not read them again.
	positionPushInterval = time.Second
)

// keyedView is a View with its Key, worked out once per reader. The zero
// keyedView sees every record.
type keyedView struct {
	View
	key string
}

// keyed returns v with its key.
func keyed(v View) keyedView { return keyedView{v, v.Key()} }

// visibleOf returns the records of recs that view sees, in a slice of their
// own (recs is left as it is).
func visibleOf(view View, recs []*kgo.Record) []*kgo.Record {
	var out []*kgo.Record
	for _, r := range recs {
		if view.Visible(r) {
			out = append(out, r)
		}
	}
	return out
}

// readVisible keeps in out, a reply read from offset from, only the records
// view sees. While it sees none and the read moved on, it reads on from
// out.next without waiting, at most maxInvisibleReads reads in all, and
// not past the end of the log as the partition's shared reader last saw
// it. A failed read past records it does not see leaves the empty reply
// with its next_offset: the client's next fetch meets the failure.
func (k *Cluster) readVisible(ctx context.Context, topic string, partition int32, view View, from int64, out *reply) {
	for reads := 1; ; reads++ {
		out.records = slices.DeleteFunc(out.records, func(r *kgo.Record) bool { return !view.Visible(r) })
		if len(out.records) > 0 || out.next == from || reads == maxInvisibleReads || k.atLogEnd(topic, partition, out.next) {
			return
		}
		from = out.next
		*out = reply{records: out.records, maxRecords: out.maxRecords, maxBytes: out.maxBytes, next: from}
		if err := k.readAt(ctx, topic, partition, out); err != nil {
			clear(out.records)
			out.records, out.next = out.records[:0], from
			return
		}
	}
}

// atLogEnd reports whether the shared reader of topic/partition runs and
// last saw the log end at offset: there is nothing to read there yet.
func (k *Cluster) atLogEnd(topic string, partition int32, offset int64) bool {
	r := k.runningReader(topic, partition)
	if r == nil {
		return false
	}
	_, end, err := r.state()
	return err == nil && offset >= end
}

// cachedFirst returns the first data record the record cache holds of key
// from offset on, or nil when it does not hold offset.
func (k *Cluster) cachedFirst(key cacheKey, offset int64) *kgo.Record {
	probe := reply{maxRecords: 1, next: offset}
	if !k.cache.read(key, offset, &probe) || len(probe.records) == 0 {
		return nil
	}
	return probe.records[0]
}
