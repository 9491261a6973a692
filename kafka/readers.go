package kafka

import (
	"time"

	"github.com/google/btree"
)

// readerTTL is how long a reader of a partition counts after its last read:
// a session reading fetch after fetch reads far more often.
const readerTTL = 2 * time.Second

// readerAt is where a reader of a partition was seen reading, and when.
type readerAt struct {
	offset int64
	seen   time.Time
	lane   *brokerLane
	id     uint64 // orders readers at one offset
}

// readerIndex is where the sessions reading one partition read next, by
// broker lane and in offset order, so that the lowest reader from an
// offset on is found in O(log n) of the readers: a fetch loop asks at
// every reply that it reads ahead of, and thousands of fetch loops may read
// one partition. A reader not seen within readerTTL is forgotten when a
// search meets it, or at the latest by a sweep of all readers at most once
// every readerTTL. The zero value is an empty index.
type readerIndex struct {
	byLane   map[*brokerLane]*readerAt
	byOffset *btree.BTreeG[*readerAt]
	lastID   uint64
	swept    time.Time // when the readers not seen lately were last dropped
}

// readerIndexDegree is the degree of the index's B-tree: nodes of up to 63
// readers, few enough that an insertion's copying stays short.
const readerIndexDegree = 32

// readerBefore orders readers by offset, then by when they were first seen.
func readerBefore(a, b *readerAt) bool {
	return a.offset < b.offset || a.offset == b.offset && a.id < b.id
}

// note records that lane reads next at offset, seen at now.
func (x *readerIndex) note(lane *brokerLane, offset int64, now time.Time) {
	if x.byLane == nil {
		x.byLane = make(map[*brokerLane]*readerAt)
		x.byOffset = btree.NewG(readerIndexDegree, readerBefore)
	}
	r := x.byLane[lane]
	switch {
	case r == nil:
		x.lastID++
		r = &readerAt{offset: offset, lane: lane, id: x.lastID}
		x.byLane[lane] = r
		x.byOffset.ReplaceOrInsert(r)
	case r.offset != offset:
		x.byOffset.Delete(r)
		r.offset = offset
		x.byOffset.ReplaceOrInsert(r)
	}
	r.seen = now
}

// lowestFrom returns the lowest offset from offset from on that a reader
// seen within readerTTL of now reads at, and whether there is one. It
// forgets the readers not seen within readerTTL that it meets, and sweeps
// all of them once every readerTTL.
func (x *readerIndex) lowestFrom(from int64, now time.Time) (int64, bool) {
	if x.byOffset == nil {
		return 0, false
	}
	if now.Sub(x.swept) >= readerTTL {
		x.swept = now
		for _, r := range x.byLane {
			if now.Sub(r.seen) > readerTTL {
				x.forget(r)
			}
		}
	}
	var low *readerAt
	var gone []*readerAt
	x.byOffset.AscendGreaterOrEqual(&readerAt{offset: from}, func(r *readerAt) bool {
		if now.Sub(r.seen) > readerTTL {
			gone = append(gone, r)
			return true
		}
		low = r
		return false
	})
	for _, r := range gone {
		x.forget(r)
	}
	if low == nil {
		return 0, false
	}
	return low.offset, true
}

// forget drops r from the index.
func (x *readerIndex) forget(r *readerAt) {
	delete(x.byLane, r.lane)
	x.byOffset.Delete(r)
}

// len returns how many readers the index holds.
func (x *readerIndex) len() int { return len(x.byLane) }
