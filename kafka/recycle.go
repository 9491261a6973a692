package kafka

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// A full fetch of small records decodes thousands of franz-go records and
// builds as many protocol messages. The fetch handler takes both from pools
// and gives them back once its reply is written (pubsub.Request.AfterReply),
// instead of leaving a few megabytes to the garbage collector per fetch.

// recycleKey marks a context whose fetches decode into pooled slices.
type recycleKey struct{}

// recycled returns ctx marked so that the records of a fetch made with it
// are decoded into pooled slices, which the caller gives back with
// recycleRecords once nothing reads them any more. Fetches without the mark
// (a shared reader that keeps its records) are not pooled, so recycling
// their records does nothing.
func recycled(ctx context.Context) context.Context {
	return context.WithValue(ctx, recycleKey{}, true)
}

// fetchPools returns the franz-go pools a fetch made with ctx decodes into.
func fetchPools(ctx context.Context) []kgo.Pool {
	if ctx.Value(recycleKey{}) == nil {
		return nil
	}
	return recordPools
}

var recordPools = []kgo.Pool{recordSlices{}}

// recycleRecords gives the records of a fetch made with a recycled context
// back to their pool. The records must not be used afterwards; keys and
// values taken from them stay valid (they point into the fetch response or
// a batch's decompressed bytes, neither of which is pooled).
func recycleRecords(records []*kgo.Record) {
	for _, r := range records {
		r.Recycle()
	}
}

// recordSlices is a kgo.PoolRecords of the record slices franz-go decodes
// record batches into.
type recordSlices struct{}

var recordSlicePool sync.Pool // of *[]kgo.Record

// GetRecords implements kgo.PoolRecords.
func (recordSlices) GetRecords(n int) []kgo.Record {
	if s, ok := recordSlicePool.Get().(*[]kgo.Record); ok && cap(*s) >= n {
		return (*s)[:0]
	}
	return make([]kgo.Record, 0, n)
}

// PutRecords implements kgo.PoolRecords. Records the fetch skipped (before
// its offset) still point into their response: clearing them lets it go.
func (recordSlices) PutRecords(s []kgo.Record) {
	clear(s)
	recordSlicePool.Put(&s)
}

// messageSlabs pools the message slabs of fetch replies.
var messageSlabs = sync.Pool{New: func() any { return new(messageSlab) }}

// release clears the slab, so that it holds on to no record's bytes, and
// puts it back into messageSlabs. The messages it held must no longer be
// read.
func (s *messageSlab) release() {
	clear(s.backing)
	clear(s.headers)
	messageSlabs.Put(s)
}
