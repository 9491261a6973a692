package kafka

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"
	"weak"

	"github.com/twmb/franz-go/pkg/kgo"
)

// records returns records at the given offsets with value "v<offset>".
func records(offsets ...int64) []*kgo.Record {
	recs := make([]*kgo.Record, len(offsets))
	for i, o := range offsets {
		recs[i] = &kgo.Record{Offset: o, Value: fmt.Appendf(nil, "v%d", o)}
	}
	return recs
}

// offsetsOf returns the offsets of recs.
func offsetsOf(recs []*kgo.Record) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.Offset
	}
	return out
}

// readAll reads key from offset with room for everything.
func readAll(rc *recordCache, key cacheKey, offset int64) (offsets []int64, next int64, ok bool) {
	out := newReply(offset, 1000, 1<<20)
	ok = rc.read(key, offset, out)
	return offsetsOf(out.records), out.next, ok
}

var p0 = cacheKey{readerKey: readerKey{"t", 0}}

func TestCacheReadsFollowOnlyContiguousRuns(t *testing.T) {
	rc := newRecordCache(1<<20, 1<<20)
	rc.insert(p0, unknownEpoch, run{first: 0, next: 3, records: records(0, 1, 2)})
	// The consumer jumped from 2 to 5: offsets 3 and 4 are not known.
	rc.insert(p0, unknownEpoch, run{first: 5, next: 8, records: records(5, 6, 7)})

	if got, next, ok := readAll(rc, p0, 0); !ok || !slices.Equal(got, []int64{0, 1, 2}) || next != 3 {
		t.Fatalf("read at 0: %v next %d ok %v; want [0 1 2] next 3", got, next, ok)
	}
	for _, at := range []int64{3, 4, 8, -1} {
		if got, _, ok := readAll(rc, p0, at); ok {
			t.Fatalf("read at %d: served %v from a gap or past the end", at, got)
		}
	}
	if got, next, ok := readAll(rc, p0, 6); !ok || !slices.Equal(got, []int64{6, 7}) || next != 8 {
		t.Fatalf("read at 6: %v next %d; want [6 7] next 8", got, next)
	}

	// A broker answer proves 3 holds a control record and 4 an aborted one.
	rc.insert(p0, unknownEpoch, run{first: 3, next: 5})
	if got, next, _ := readAll(rc, p0, 1); !slices.Equal(got, []int64{1, 2, 5, 6, 7}) || next != 8 {
		t.Fatalf("read at 1 across the proven run: %v next %d; want [1 2 5 6 7] next 8", got, next)
	}
	if got, next, ok := readAll(rc, p0, 3); !ok || !slices.Equal(got, []int64{5, 6, 7}) || next != 8 {
		t.Fatalf("read at 3 (no data record): %v next %d; want [5 6 7] next 8", got, next)
	}
}

// holds and heldBefore answer for exactly the offsets read serves: in a
// chunk, not in a gap, before the first or at the end, nor of a partition
// with nothing cached.
func TestCacheHoldsExactlyWhatItReads(t *testing.T) {
	rc := newRecordCache(1<<20, 1<<20)
	before := time.Now()
	rc.insert(p0, unknownEpoch, run{first: 2, next: 4, records: records(2, 3)})
	rc.insert(p0, unknownEpoch, run{first: 6, next: 7, records: records(6)})
	after := time.Now().Add(time.Second)
	for at := int64(0); at <= 8; at++ {
		_, _, read := readAll(rc, p0, at)
		if got := rc.holds(p0, at); got != read {
			t.Errorf("holds(%d) = %v, read served %v", at, got, read)
		}
		if got := rc.heldBefore(p0, at, after); got != read {
			t.Errorf("heldBefore(%d, after the inserts) = %v, read served %v", at, got, read)
		}
		if rc.heldBefore(p0, at, before) {
			t.Errorf("heldBefore(%d, before the inserts) = true", at)
		}
	}
	p1 := cacheKey{readerKey: readerKey{"t", 1}}
	if rc.holds(p1, 2) || rc.heldBefore(p1, 2, after) {
		t.Error("a partition with nothing cached holds offset 2")
	}
}

func TestCacheReplyLimitsAndNextOffset(t *testing.T) {
	rc := newRecordCache(1<<20, 1<<20)
	// A compacted batch: [10, 20) holds only 12, 15 and 19.
	rc.insert(p0, unknownEpoch, run{first: 10, next: 20, records: records(12, 15, 19)})
	out := newReply(10, 2, 1<<20)
	rc.read(p0, 10, out)
	if got := offsetsOf(out.records); !slices.Equal(got, []int64{12, 15}) || out.next != 16 {
		t.Fatalf("two records from 10: %v next %d; want [12 15] next 16", got, out.next)
	}
	out = newReply(16, 10, 1<<20)
	rc.read(p0, 16, out)
	if got := offsetsOf(out.records); !slices.Equal(got, []int64{19}) || out.next != 20 {
		t.Fatalf("from 16: %v next %d; want [19] next 20", got, out.next)
	}
	// A byte bound below one record still delivers that record.
	out = newReply(12, 10, 1)
	rc.read(p0, 12, out)
	if got := offsetsOf(out.records); !slices.Equal(got, []int64{12}) || out.next != 13 {
		t.Fatalf("from 12 with 1 byte: %v next %d; want [12] next 13", got, out.next)
	}
}

func TestCacheKeepsWhatItHoldsWhenRunsOverlap(t *testing.T) {
	rc := newRecordCache(1<<20, 1<<20)
	rc.insert(p0, unknownEpoch, run{first: 5, next: 8, records: records(5, 6, 7)})
	before := rc.Bytes()
	// A later answer covering [3, 10) adds only what is missing.
	rc.insert(p0, unknownEpoch, run{first: 3, next: 10, records: records(3, 4, 5, 6, 7, 8, 9)})
	if got, next, _ := readAll(rc, p0, 3); !slices.Equal(got, []int64{3, 4, 5, 6, 7, 8, 9}) || next != 10 {
		t.Fatalf("read at 3: %v next %d", got, next)
	}
	added := rc.Bytes() - before
	if want := 2*chunkOverhead + 4*(2+recordOverhead); added != want {
		t.Fatalf("overlapping insert added %d bytes, want %d (two chunks of two records)", added, want)
	}
	if n := len(rc.parts[p0].chunks); n != 3 {
		t.Fatalf("%d chunks, want 3", n)
	}
}

func TestCacheStaysWithinItsBytesAndEvictsOldestFirst(t *testing.T) {
	one := chunkOverhead + 10*(3+recordOverhead) // ten records "vNN"
	rc := newRecordCache(5*one, 3*one)
	p1 := cacheKey{readerKey: readerKey{"t", 1}}
	insert := func(key cacheKey, first int64) {
		recs := make([]int64, 10)
		for i := range recs {
			recs[i] = first + int64(i)
		}
		rc.insert(key, unknownEpoch, run{first: first, next: first + 10, records: records(recs...)})
		if b := rc.Bytes(); b > 5*one {
			t.Fatalf("cache holds %d bytes, bound %d", b, 5*one)
		}
		if b := rc.parts[key].bytes; b > 3*one {
			t.Fatalf("partition %d holds %d bytes, bound %d", key.partition, b, 3*one)
		}
	}
	for _, first := range []int64{10, 20, 30, 40} { // the fourth evicts the first
		insert(p0, first)
	}
	if _, _, ok := readAll(rc, p0, 10); ok {
		t.Fatal("the oldest chunk of the partition was not evicted")
	}
	if got, next, _ := readAll(rc, p0, 20); len(got) != 30 || next != 50 {
		t.Fatalf("read at 20: %d records next %d; want 30 next 50", len(got), next)
	}
	insert(p1, 10)
	insert(p1, 20)
	insert(p1, 30) // the cache's bound: the oldest chunk overall (p0 at 20) goes
	if _, _, ok := readAll(rc, p0, 25); ok {
		t.Fatal("the oldest chunk of the cache was not evicted")
	}
	if got, _, _ := readAll(rc, p0, 30); len(got) != 20 {
		t.Fatalf("p0 at 30: %d records, want 20", len(got))
	}
	if got, _, _ := readAll(rc, p1, 10); len(got) != 30 {
		t.Fatalf("p1 at 10: %d records, want 30", len(got))
	}
	// A chunk larger than the bounds is not kept at all.
	big := records(100)
	big[0].Value = make([]byte, 6*one)
	rc.insert(p0, unknownEpoch, run{first: 100, next: 101, records: big})
	if _, _, ok := readAll(rc, p0, 100); ok || rc.Bytes() > 5*one {
		t.Fatalf("an oversized chunk stayed: %d bytes", rc.Bytes())
	}
}

// TestChunksBehindEveryReaderAreEvictedFirst: of a partition over its
// bound, the chunks that every reader seen lately has passed go first, so
// that a reader that fell behind and fetched a chunk again does not push
// out the chunks after it (eviction by age alone did, a hole at every
// step); a reader behind all the chunks, or not seen for readerTTL, holds
// nothing back. A session ahead has room to read ahead only beside the
// chunks before the read-ahead that a reader still needs.
func TestChunksBehindEveryReaderAreEvictedFirst(t *testing.T) {
	one := chunkOverhead + 10*(3+recordOverhead) // ten records "vNN"
	rc := newRecordCache(1<<20, 3*one)
	insert := func(first int64) {
		recs := make([]int64, 10)
		for i := range recs {
			recs[i] = first + int64(i)
		}
		rc.insert(p0, unknownEpoch, run{first: first, next: first + 10, records: records(recs...)})
	}
	held := func() (firsts []int64) {
		for _, c := range rc.parts[p0].chunks {
			firsts = append(firsts, c.first)
		}
		return firsts
	}
	leader, laggard := new(brokerLane), new(brokerLane)
	// reads notes that lane reads on at next, as a read or a fetch that
	// ends there does.
	reads := func(lane *brokerLane, next int64) { rc.reading(p0, &reply{reader: lane, next: next}) }
	for _, first := range []int64{20, 30, 40} {
		reads(leader, first+10)
		insert(first)
	}
	// The laggard, behind every chunk, fetches the chunk at 10 again and
	// reads on at 20: its chunk is behind every reader and goes first (by
	// age, the chunk at 20 would go: a hole where it reads next).
	reads(laggard, 20)
	insert(10)
	if got := held(); !slices.Equal(got, []int64{20, 30, 40}) {
		t.Fatalf("chunks %v after the laggard's fetch at 10, want [20 30 40]", got)
	}
	// The leader has no room to read ahead: that would push out what the
	// laggard reads next.
	if rc.roomAhead(p0, 50, one) {
		t.Fatal("room to read ahead while every chunk is still to be read")
	}
	reads(laggard, 30) // the chunk at 20 is behind everyone now
	if !rc.roomAhead(p0, 50, one) || rc.roomAhead(p0, 50, 2*one) {
		t.Fatal("want room for one chunk, the one behind every reader")
	}
	insert(50)
	if got := held(); !slices.Equal(got, []int64{30, 40, 50}) {
		t.Fatalf("chunks %v, want [30 40 50]", got)
	}
	// A reader behind every chunk holds nothing back.
	reads(laggard, 5)
	if !rc.roomAhead(p0, 60, 2*one) {
		t.Fatal("a reader behind every chunk holds back the read-ahead")
	}
	// Chunks after where the read-ahead starts (a live end that others
	// read) do not hold it back: from 40, only the chunk at 30 counts.
	reads(laggard, 30)
	if !rc.roomAhead(p0, 40, 2*one) || rc.roomAhead(p0, 60, 2*one) {
		t.Fatal("want room for two chunks ahead from 40, not from 60")
	}
	// Readers not seen for readerTTL hold nothing back.
	p := rc.parts[p0]
	for _, r := range p.readers.byLane {
		r.seen = r.seen.Add(-readerTTL - time.Second)
	}
	if !rc.roomAhead(p0, 60, 3*one) {
		t.Fatal("readers that went quiet hold back the read-ahead")
	}
	if n := p.readers.len(); n != 0 {
		t.Fatalf("%d readers remembered after they went quiet", n)
	}
}

// TestEvictedChunksAreNotKeptAlive: a chunk evicted from the front of a
// partition's chunks, as the oldest at its live end is, leaves nothing of
// it reachable: its records are collected while the partition holds the
// chunks after it (in the array that held it too: the fourth chunk fits
// the array the first three grew, and nothing is inserted after the
// eviction).
func TestEvictedChunksAreNotKeptAlive(t *testing.T) {
	one := chunkOverhead + 10*(3+recordOverhead) // ten records "vNN"
	rc := newRecordCache(1<<20, 3*one)
	var evicted weak.Pointer[kgo.Record]
	for _, at := range []int64{10, 20, 30, 40} { // the fourth evicts the first
		recs := records(at, at+1, at+2, at+3, at+4, at+5, at+6, at+7, at+8, at+9)
		if at == 10 {
			evicted = weak.Make(recs[0])
		}
		rc.insert(p0, unknownEpoch, run{first: at, next: at + 10, records: recs})
	}
	if got, _, _ := readAll(rc, p0, 20); len(got) != 30 {
		t.Fatalf("read at 20: %d records, want the last three chunks' 30", len(got))
	}
	collected := false
	for i := 0; i < 10 && !collected; i++ { // a collection or two frees what nothing reaches
		runtime.GC()
		collected = evicted.Value() == nil
	}
	if !collected {
		t.Fatal("the records of the evicted chunk are still reachable")
	}
	if n := len(rc.parts[p0].chunks); n != 3 { // and the cache was alive all along
		t.Fatalf("%d chunks held, want 3", n)
	}
}

// BenchmarkInsertIntoAFullWindow: the cost of caching one more small batch
// of a partition whose 32 MiB window is full of small batches (the live end
// of a topic written a record at a time: some 90,000 chunks), which evicts
// the oldest.
func BenchmarkInsertIntoAFullWindow(b *testing.B) {
	rc := newRecordCache(1<<30, 32<<20)
	next := int64(0)
	insertOne := func() {
		rc.insert(p0, unknownEpoch, run{first: next, next: next + 1, records: records(next)})
		next++
	}
	for rc.parts[p0] == nil || rc.parts[p0].bytes+chunkOverhead+recordOverhead < 32<<20 {
		insertOne()
	}
	for b.Loop() {
		insertOne()
	}
	b.ReportMetric(float64(len(rc.parts[p0].chunks)), "chunks")
}

// BenchmarkDropAFullWindow: the cost of forgetting every chunk of a
// partition whose 32 MiB window is full of one-record batches, as a
// deleted topic, a new leader epoch or a truncated log makes the cache do.
func BenchmarkDropAFullWindow(b *testing.B) {
	rc := newRecordCache(1<<30, 32<<20)
	next := int64(0)
	for b.Loop() {
		b.StopTimer()
		for rc.parts[p0] == nil || rc.parts[p0].bytes+chunkOverhead+recordOverhead < 32<<20 {
			rc.insert(p0, unknownEpoch, run{first: next, next: next + 1, records: records(next)})
			next++
		}
		b.StartTimer()
		rc.drop(p0.readerKey)
	}
}

func TestCacheForgetsWhatKafkaNoLongerHolds(t *testing.T) {
	rc := newRecordCache(1<<20, 1<<20)
	first := cacheKey{p0.readerKey, [16]byte{1}}
	second := cacheKey{p0.readerKey, [16]byte{2}}
	rc.insert(first, 3, run{first: 0, next: 3, records: records(0, 1, 2)})
	rc.insert(first, 3, run{first: 3, next: 6, records: records(3, 4, 5)})
	rc.trimBefore(first, 2) // the log start moved to 2
	if _, _, ok := readAll(rc, first, 1); ok {
		t.Fatal("records before the log start are still served")
	}
	if got, _, _ := readAll(rc, first, 3); !slices.Equal(got, []int64{3, 4, 5}) {
		t.Fatalf("read at 3: %v", got)
	}
	// The topic was deleted and created again: the new incarnation's key
	// holds nothing, whatever the old one holds.
	if _, _, ok := readAll(rc, second, 3); ok {
		t.Fatal("records of the old topic are served under the new topic id")
	}
	rc.confirm(second, 0, 0) // a check found the new incarnation
	if _, _, ok := readAll(rc, first, 3); ok || rc.Bytes() != 0 {
		t.Fatalf("records of the old topic are still kept (%d bytes)", rc.Bytes())
	}
	rc.insert(second, 0, run{first: 0, next: 1, records: records(0)})
	rc.drop(p0.readerKey)
	if _, _, ok := readAll(rc, second, 0); ok || rc.Bytes() != 0 {
		t.Fatalf("dropped records are still served (%d bytes)", rc.Bytes())
	}
}

func TestCacheDropsRecordsOfAnOlderLeaderEpoch(t *testing.T) {
	rc := newRecordCache(1<<20, 1<<20)
	rc.insert(p0, 4, run{first: 0, next: 3, records: records(0, 1, 2)})
	rc.confirm(p0, 4, 0)
	if got, _, _ := readAll(rc, p0, 0); !slices.Equal(got, []int64{0, 1, 2}) {
		t.Fatalf("read at 0 under the same epoch: %v", got)
	}
	// A new leader (epoch 5) may have truncated the log after an unclean
	// election: what was cached under epoch 4 may no longer be in it.
	rc.confirm(p0, 5, 0)
	if _, _, ok := readAll(rc, p0, 0); ok || rc.Bytes() != 0 {
		t.Fatalf("records of epoch 4 are still served under epoch 5 (%d bytes)", rc.Bytes())
	}
	// An answer of the deposed leader that comes late is not kept; the
	// new leader's is, and a newer epoch's answer replaces it.
	rc.insert(p0, 4, run{first: 0, next: 3, records: records(0, 1, 2)})
	if _, _, ok := readAll(rc, p0, 0); ok {
		t.Fatal("an answer of an older epoch was cached")
	}
	rc.insert(p0, 5, run{first: 0, next: 2, records: records(0, 1)})
	rc.insert(p0, 6, run{first: 5, next: 6, records: records(5)})
	if _, _, ok := readAll(rc, p0, 0); ok {
		t.Fatal("records of epoch 5 survived an answer of epoch 6")
	}
	if got, _, _ := readAll(rc, p0, 5); !slices.Equal(got, []int64{5}) {
		t.Fatalf("read at 5 under epoch 6: %v", got)
	}
	// The shared readers' records (epoch unknown) join what is there.
	rc.insert(p0, unknownEpoch, run{first: 6, next: 7, records: records(6)})
	if got, _, _ := readAll(rc, p0, 5); !slices.Equal(got, []int64{5, 6}) {
		t.Fatalf("read at 5 after a reader's record: %v", got)
	}
}

func TestCachePartOfABatchKeepsOnlyItsOwnBytes(t *testing.T) {
	rc := newRecordCache(1<<20, 1<<20)
	// One decoded batch: its records share one buffer.
	buf := make([]byte, 4000)
	batch := make([]*kgo.Record, 4)
	for i := range batch {
		batch[i] = &kgo.Record{Offset: int64(i), Value: buf[i*1000 : (i+1)*1000 : (i+1)*1000]}
	}
	rc.insert(p0, unknownEpoch, run{first: 0, next: 2, records: batch[:2]}) // two of them are held already
	rc.insert(p0, unknownEpoch, run{first: 0, next: 4, records: batch})
	c := rc.parts[p0].chunks[1]
	if c.first != 2 || len(c.records) != 2 {
		t.Fatalf("second chunk [%d, %d) with %d records, want [2, 4) with 2", c.first, c.next, len(c.records))
	}
	for _, r := range c.records {
		if cap(r.Value) != len(r.Value) || &r.Value[0] == &buf[r.Offset*1000] {
			t.Fatalf("record %d of a partial chunk still points into the batch's buffer", r.Offset)
		}
		if string(r.Value) != string(batch[r.Offset].Value) {
			t.Fatalf("record %d changed when copied", r.Offset)
		}
	}
	if got, _, _ := readAll(rc, p0, 0); !slices.Equal(got, []int64{0, 1, 2, 3}) {
		t.Fatalf("read at 0: %v", got)
	}
}
