package kafka

import (
	"container/list"
	"math"
	"slices"
	"sort"
	"sync"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The record cache keeps the records a Cluster decoded, for every session
// that reads the same partitions: fetches and subscriptions read it first,
// and only what it does not hold is asked of Kafka and decoded, once.
//
// It never serves a gap. It holds chunks: runs of offsets [first, next)
// proven to hold exactly the chunk's data records, either by one broker
// fetch answer (the batches returned from first on, whose metadata covers
// offsets that hold no data record: compacted away, control records,
// aborted transactions) or by consecutive offsets from the shared readers'
// consumer. A read follows chunks only while each begins where the previous
// one ends; anything else goes to Kafka. Whatever the consumer does (a reset
// after an unknown leader epoch skips records), a skipped offset is simply
// not in the cache.
//
// Chunks are kept per incarnation of a topic: the topic id is part of the
// key, and a chunk is only ever read under the id it was fetched with, so
// the records of a topic deleted and created again under the same name can
// never answer for the new one. Within an incarnation, chunks are kept per
// leader epoch: when the partition's leader epoch moves on (a new leader,
// which may have truncated the log after an unclean election), the chunks
// cached under the older epoch are dropped.

// Fixed costs counted with each record and chunk, so that the cache's bound
// holds for many small records too.
var (
	recordOverhead = int(unsafe.Sizeof(kgo.Record{})) + int(unsafe.Sizeof(&kgo.Record{}))
	chunkOverhead  = int(unsafe.Sizeof(chunk{})) + 2*int(unsafe.Sizeof(list.Element{}))
)

// recordCache holds the chunks of one Cluster, bounded in bytes over all
// partitions and per partition, and evicts the oldest chunks first.
type recordCache struct {
	maxBytes     int // all partitions together
	maxPartBytes int // one partition

	mu     sync.Mutex
	bytes  int
	parts  map[cacheKey]*partitionCache
	oldest list.List // of *chunk, in insertion order
}

// cacheKey names the records of one partition of one incarnation of a
// topic: a topic deleted and created again has a new id. The zero id is the
// key of brokers that report no topic ids.
type cacheKey struct {
	readerKey
	topicID [16]byte
}

// unknownEpoch marks chunks whose leader epoch is not known (the shared
// readers' consumer, which fences its own fetches and reports a truncation
// as data loss).
const unknownEpoch = -1

// partitionCache holds the chunks of one partition.
type partitionCache struct {
	key    cacheKey
	epoch  int32     // the leader epoch the chunks were fetched or confirmed at, or unknownEpoch
	logEnd int64     // the end of the log (of what read_committed reads) a broker fetch last saw, or 0
	chunks []*chunk  // ordered by offset, disjoint
	bytes  int       // the bytes of the chunks
	oldest list.List // of *chunk, in insertion order
	// readers are the offsets that sessions reading p were last seen
	// reading at, by their broker lane (see reading).
	readers readerIndex
}

// chunk is a run of offsets whose data records are all known.
type chunk struct {
	first, next int64 // the run [first, next)
	// Every data record of the run, in offset order, in one form or both:
	// records (as the shared readers' consumer hands them, or unpacked for
	// readers of records) and packed (as fetch loops read them from Kafka,
	// or packed for their replies). A form a reader needs is made from the
	// other on first use, kept and counted. packed may end before records
	// do, at a record that a reply cannot carry (see packRecords).
	records []*kgo.Record
	packed  *packedRecords
	// unpacked marks records made from packed, whose bytes are packed's.
	unpacked bool
	bytes    int
	cached   time.Time // when the chunk was fetched or last confirmed
	part     *partitionCache
	inCache  *list.Element // in recordCache.oldest
	inPart   *list.Element // in partitionCache.oldest
}

func newRecordCache(maxBytes, maxPartBytes int) *recordCache {
	return &recordCache{maxBytes: maxBytes, maxPartBytes: maxPartBytes, parts: make(map[cacheKey]*partitionCache)}
}

// Bytes returns the bytes the cache holds, as counted against its bounds.
func (rc *recordCache) Bytes() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.bytes
}

// run is a range of offsets [first, next) of a partition and exactly the
// data records in it, in offset order: records, or packed when packed
// holds them all.
type run struct {
	first, next int64
	records     []*kgo.Record
	packed      *packedRecords
}

// packed returns r with its records packed, and without them when packed
// holds them all.
func (r run) pack() run {
	p, n := packRecords(r.records)
	r.packed = p
	if n == len(r.records) {
		r.records = nil
	}
	return r
}

// part returns a chunk of the records of r in [from, to): copies when that
// is not all of r, so that it pins no more than the bytes it counts.
func (r run) part(from, to int64) *chunk {
	c := &chunk{first: from, next: to}
	if r.records != nil {
		recs := recordsIn(r.records, from, to)
		if len(recs) < len(r.records) {
			// Records of one decoded batch share its buffer.
			recs = compactRecords(recs)
		}
		c.records = recs
	}
	if p := r.packed; p != nil {
		i, j := p.search(from), p.search(to)
		if i > 0 || j < p.len() {
			p = p.slice(i, j)
		}
		c.packed = p
	}
	c.bytes = c.cost()
	return c
}

// count returns the number of data records of c.
func (c *chunk) count() int {
	if c.records != nil {
		return len(c.records)
	}
	return c.packed.len()
}

// cost is what c counts against the cache's bounds.
func (c *chunk) cost() int {
	n := chunkOverhead
	if c.packed != nil {
		n += c.packed.cost()
	}
	for _, r := range c.records {
		n += recordOverhead
		if c.unpacked {
			n += len(r.Headers) * int(unsafe.Sizeof(kgo.RecordHeader{}))
		} else {
			n += recordBytes(r)
		}
	}
	return n
}

// insert records runs of key, all at once, so that no reader sees part of
// one broker answer. Parts of a run the cache holds already are left as
// they are. epoch is the leader epoch the broker answered at (unknownEpoch
// when not known): runs of an older epoch than the cache's are not kept,
// and a newer epoch drops the chunks of the older one first.
func (rc *recordCache) insert(key cacheKey, epoch int32, runs ...run) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	p := rc.parts[key]
	if p == nil {
		p = &partitionCache{key: key, epoch: unknownEpoch}
		rc.parts[key] = p
	}
	if rc.atEpochLocked(p, epoch) {
		for _, r := range runs {
			rc.insertLocked(p, r)
		}
	}
	rc.boundLocked(p)
}

// boundLocked evicts chunks of p while they count more than the partition's
// bound: first those that every reader of p has passed, lowest first, then
// the oldest; then the oldest of the cache while it counts more than its
// bound. Callers hold mu.
func (rc *recordCache) boundLocked(p *partitionCache) {
	if p.bytes > rc.maxPartBytes {
		passed := p.lowWaterLocked(time.Now())
		for p.bytes > rc.maxPartBytes && len(p.chunks) > 0 && p.chunks[0].next <= passed {
			rc.removeLocked(p.chunks[0])
		}
	}
	for p.bytes > rc.maxPartBytes && p.oldest.Len() > 0 {
		rc.removeLocked(p.oldest.Front().Value.(*chunk))
	}
	for rc.bytes > rc.maxBytes && rc.oldest.Len() > 0 {
		rc.removeLocked(rc.oldest.Front().Value.(*chunk))
	}
	rc.unlistIfEmptyLocked(p)
}

// recordsLocked returns the records of c, unpacking them on first use.
// Callers hold mu.
func (rc *recordCache) recordsLocked(c *chunk) []*kgo.Record {
	if c.records == nil && c.packed.len() > 0 {
		c.records, c.unpacked = c.packed.unpack(c.part.key.topic, c.part.key.partition), true
		rc.recountLocked(c)
	}
	return c.records
}

// packedLocked returns the packed records of c, packing them on first use.
// Callers hold mu.
func (rc *recordCache) packedLocked(c *chunk) *packedRecords {
	if c.packed == nil {
		c.packed, _ = packRecords(c.records)
		rc.recountLocked(c)
	}
	return c.packed
}

// recountLocked counts c anew after a form of its records was made.
// Callers hold mu.
func (rc *recordCache) recountLocked(c *chunk) {
	n := c.cost()
	c.part.bytes += n - c.bytes
	rc.bytes += n - c.bytes
	c.bytes = n
}

// atEpochLocked moves p to leader epoch epoch: a newer epoch than p's drops
// p's chunks (the new leader's log may differ after the offsets it shares
// with the old one), an older one is refused. It reports whether records of
// epoch may be kept. Callers hold mu.
func (rc *recordCache) atEpochLocked(p *partitionCache, epoch int32) bool {
	switch {
	case epoch == unknownEpoch || epoch == p.epoch:
		return true
	case p.epoch == unknownEpoch:
		// Chunks of the shared readers: their consumer fences its own
		// fetches and reports a truncation under it as data loss.
		p.epoch = epoch
		return true
	case epoch < p.epoch:
		return false
	}
	for len(p.chunks) > 0 {
		rc.removeLocked(p.chunks[0])
	}
	p.epoch = epoch
	return true
}

// insertLocked adds the parts of r that p does not hold yet as chunks.
// Callers hold mu.
func (rc *recordCache) insertLocked(p *partitionCache, r run) {
	i := sort.Search(len(p.chunks), func(i int) bool { return p.chunks[i].next > r.first })
	for at := r.first; at < r.next; {
		if i < len(p.chunks) && p.chunks[i].first <= at {
			at = p.chunks[i].next // held already
			i++
			continue
		}
		end := r.next
		if i < len(p.chunks) && p.chunks[i].first < end {
			end = p.chunks[i].first
		}
		c := r.part(at, end)
		c.part, c.cached = p, time.Now()
		p.chunks = slices.Insert(p.chunks, i, c)
		c.inCache = rc.oldest.PushBack(c)
		c.inPart = p.oldest.PushBack(c)
		p.bytes += c.bytes
		rc.bytes += c.bytes
		i++
		at = end
	}
}

// recordsIn returns the records of recs (in offset order) in [from, to).
func recordsIn(recs []*kgo.Record, from, to int64) []*kgo.Record {
	i := sort.Search(len(recs), func(i int) bool { return recs[i].Offset >= from })
	j := i + sort.Search(len(recs)-i, func(j int) bool { return recs[i+j].Offset >= to })
	return recs[i:j:j]
}

// removeLocked drops chunk c. The first chunk, which eviction drops most
// (a window full of one-record batches at the live end holds some 90,000),
// is sliced off without moving the others. Callers hold mu.
func (rc *recordCache) removeLocked(c *chunk) {
	p := c.part
	i := sort.Search(len(p.chunks), func(i int) bool { return p.chunks[i].first >= c.first })
	if i == 0 {
		p.chunks[0] = nil // the array keeps no dropped chunk alive
		p.chunks = p.chunks[1:]
	} else {
		p.chunks = slices.Delete(p.chunks, i, i+1)
	}
	rc.oldest.Remove(c.inCache)
	p.oldest.Remove(c.inPart)
	p.bytes -= c.bytes
	rc.bytes -= c.bytes
	rc.unlistIfEmptyLocked(p)
}

// unlistIfEmptyLocked forgets p once it holds no chunk, unless it knows its
// leader epoch: that is kept, so that a late answer of a deposed leader is
// still refused. Callers hold mu.
func (rc *recordCache) unlistIfEmptyLocked(p *partitionCache) {
	if len(p.chunks) == 0 && p.epoch == unknownEpoch && rc.parts[p.key] == p {
		delete(rc.parts, p.key)
	}
}

// confirm records what a check of Kafka found for key: the topic's
// current incarnation is key.topicID, its partition's leader epoch is epoch
// and its log starts at logStart. Chunks of other incarnations of the topic,
// of an older epoch, or before logStart are dropped.
func (rc *recordCache) confirm(key cacheKey, epoch int32, logStart int64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for k, p := range rc.parts {
		if k.readerKey == key.readerKey && k.topicID != key.topicID {
			for len(p.chunks) > 0 {
				rc.removeLocked(p.chunks[0])
			}
			delete(rc.parts, k)
		}
	}
	p := rc.parts[key]
	if p == nil {
		return
	}
	rc.atEpochLocked(p, epoch)
	rc.trimBeforeLocked(p, logStart)
	now := time.Now()
	for _, c := range p.chunks {
		c.cached = now
	}
}

// trimBefore drops the chunks of key that begin before logStart: Kafka no
// longer holds those records.
func (rc *recordCache) trimBefore(key cacheKey, logStart int64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if p := rc.parts[key]; p != nil {
		rc.trimBeforeLocked(p, logStart)
	}
}

// trimBeforeLocked drops the chunks of p that begin before logStart.
// Callers hold mu.
func (rc *recordCache) trimBeforeLocked(p *partitionCache, logStart int64) {
	for len(p.chunks) > 0 && p.chunks[0].first < logStart {
		rc.removeLocked(p.chunks[0])
	}
}

// drop forgets every chunk of key, of every incarnation of its topic: its
// log may have changed under them.
func (rc *recordCache) drop(key readerKey) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for k, p := range rc.parts {
		for k.readerKey == key && len(p.chunks) > 0 {
			rc.removeLocked(p.chunks[0])
		}
	}
}

// holds reports whether a chunk of key holds offset.
func (rc *recordCache) holds(key cacheKey, offset int64) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.parts[key].holding(offset) >= 0
}

// heldBefore reports whether a chunk of key that holds offset was fetched or
// last confirmed before t.
func (rc *recordCache) heldBefore(key cacheKey, offset int64, t time.Time) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	p := rc.parts[key]
	i := p.holding(offset)
	return i >= 0 && p.chunks[i].cached.Before(t)
}

// holding returns the index of p's chunk that holds offset, or -1 (also
// when p is nil: nothing of the partition is cached).
func (p *partitionCache) holding(offset int64) int {
	if p == nil {
		return -1
	}
	i := sort.Search(len(p.chunks), func(i int) bool { return p.chunks[i].next > offset })
	if i == len(p.chunks) || p.chunks[i].first > offset {
		return -1
	}
	return i
}

// reading notes where the reader of out reads key next: where out ends.
// Sessions reading one partition fetch after fetch drift apart; so that one
// behind the others reads what they left in the cache instead of fetching
// and decoding it again, the chunks behind all readers are evicted first
// (by age alone, the chunks a session fetched again pushed out those it
// read next), and a session ahead holds back its read-ahead (see
// roomAhead).
func (rc *recordCache) reading(key cacheKey, out *reply) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.parts[key].readingLocked(out)
}

// readingLocked is reading for p. Callers hold mu.
func (p *partitionCache) readingLocked(out *reply) {
	if p == nil || out.reader == nil {
		return
	}
	p.readers.note(out.reader, out.next, time.Now())
}

// lowWaterLocked returns the lowest offset that a reader of p seen within
// readerTTL of now reads at, of the readers that are not behind all of p's
// chunks (those fetch from Kafka anyway), or math.MinInt64 when there is
// none (see readerIndex.lowestFrom, which forgets the readers not seen
// within readerTTL). Callers hold mu.
func (p *partitionCache) lowWaterLocked(now time.Time) int64 {
	if len(p.chunks) == 0 {
		return math.MinInt64
	}
	low, ok := p.readers.lowestFrom(p.chunks[0].first, now)
	if !ok {
		return math.MinInt64
	}
	return low
}

// roomAhead reports whether the partition of key has room for want more
// bytes, read ahead from offset at, besides the chunks before at that a
// reader of it, seen lately and not behind all its chunks, has not passed
// yet. A session that reads ahead of the others holds back its read-ahead
// while it has not: its own fetches go on, without read-ahead, so that the
// others, reading what it left in the cache, catch up instead of falling
// out of the window and decoding the same batches again. Chunks from at on
// (the live end of a partition that subscribers read, say) do not hold a
// read-ahead back.
func (rc *recordCache) roomAhead(key cacheKey, at int64, want int) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	p := rc.parts[key]
	if p == nil {
		return true
	}
	passed := p.lowWaterLocked(time.Now())
	if passed == math.MinInt64 {
		return true // no reader to keep chunks for
	}
	needed := want
	i := sort.Search(len(p.chunks), func(i int) bool { return p.chunks[i].next > passed })
	for ; i < len(p.chunks) && p.chunks[i].first < at; i++ {
		if needed += p.chunks[i].bytes; needed > rc.maxPartBytes {
			return false
		}
	}
	return needed <= rc.maxPartBytes
}

// heldFrom follows the chunks of key that run on without a gap from offset,
// for at most want bytes of records (keys, values and headers) and at most
// most bytes as the cache counts them. It returns the offset after the last
// chunk it followed (offset when no chunk holds it) and whether the cache
// holds enough from offset on: either bound, or the end of the log as the
// last broker fetch saw it.
func (rc *recordCache) heldFrom(key cacheKey, offset int64, want, most int) (end int64, enough bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	p := rc.parts[key]
	records, counted := 0, 0
	end = offset
	for i := p.holding(offset); i >= 0 && i < len(p.chunks) && p.chunks[i].first <= end; i++ {
		c := p.chunks[i]
		records += c.bytesFrom(end)
		counted += c.bytes
		end = c.next
		if records >= want || counted >= most {
			return end, true
		}
	}
	return end, p != nil && p.logEnd > 0 && end >= p.logEnd
}

// sawLogEnd records end, the end of the log of key that a broker fetch
// answered with.
func (rc *recordCache) sawLogEnd(key cacheKey, end int64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if p := rc.parts[key]; p != nil {
		p.logEnd = end
	}
}

// bytesFrom returns the bytes of the keys, values and headers of c's
// records from offset on.
func (c *chunk) bytesFrom(offset int64) int {
	n := 0
	if c.records == nil && c.packed != nil {
		return c.packed.bytesFrom(c.packed.search(offset))
	}
	for _, r := range recordsIn(c.records, offset, c.next) {
		n += recordBytes(r)
	}
	return n
}

// read adds to out the records of key from offset on, following chunks while
// they are contiguous. It reports false when no chunk holds offset.
func (rc *recordCache) read(key cacheKey, offset int64, out *reply) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	p := rc.parts[key]
	i := p.holding(offset)
	if i < 0 {
		return false
	}
	// Forms made for this read count from now on: the bounds hold again
	// once it is done (its reply keeps what it read), and its reader is
	// where the reply ends.
	defer rc.boundLocked(p)
	defer p.readingLocked(out)
	for start := i; i < len(p.chunks); i++ {
		c := p.chunks[i]
		if i > start && c.first != out.next {
			break // a gap: what lies in it is not known here
		}
		from := c.first
		if i == start {
			from = offset
		}
		if out.packed {
			pk := rc.packedLocked(c)
			k := pk.search(from)
			if j := out.addPacked(pk, k); j < pk.len() {
				return true // full
			}
			if pk.len() < c.count() {
				// A record a reply cannot carry: the reply ends before
				// it, and a reply that has none goes by records.
				out.unpackable = out.n == 0
				return true
			}
		} else {
			for _, r := range recordsIn(rc.recordsLocked(c), from, c.next) {
				if !out.add(r) {
					return true
				}
			}
		}
		out.through(c.next)
	}
	return true
}

// fetchKey names a broker fetch: a partition and the offset asked for.
type fetchKey struct {
	readerKey
	offset int64
}

// fetchGroup runs one broker fetch per partition and offset at a time:
// sessions that ask for the same offset meanwhile (readers in step, or
// subscribers catching up together) wait for it and read what it decoded
// from the cache, instead of each decoding the same batches.
type fetchGroup struct {
	mu      sync.Mutex
	running map[fetchKey]chan struct{}
}

// begin returns the channel closed when the fetch of key at offset ends, and
// whether the caller runs that fetch (then it must call end).
func (g *fetchGroup) begin(key readerKey, offset int64) (done chan struct{}, first bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fk := fetchKey{key, offset}
	if done := g.running[fk]; done != nil {
		return done, false
	}
	if g.running == nil {
		g.running = make(map[fetchKey]chan struct{})
	}
	done = make(chan struct{})
	g.running[fk] = done
	return done, true
}

// end marks the fetch of key at offset done.
func (g *fetchGroup) end(key readerKey, offset int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fk := fetchKey{key, offset}
	close(g.running[fk])
	delete(g.running, fk)
}

// reply collects the records of one reply (a fetch answer or a push):
// at most maxRecords and maxBytes of keys, values and headers, but at least
// one record, so that a large record is still delivered. A packed reply
// collects runs of packed records instead of records (see packed.go).
type reply struct {
	records []*kgo.Record
	packed  bool
	parts   []packedPart
	// unpackable marks a packed reply that found no record but one it
	// cannot carry packed: it must be read again by records.
	unpackable bool
	n          int      // the records collected
	key        cacheKey // the partition incarnation a read (readAt) read
	// reader is the broker lane of the session that reads the reply (nil
	// for a read-ahead): where it reads next is noted for the cache's
	// eviction (see reading).
	reader     *brokerLane
	maxRecords int
	maxBytes   int
	bytes      int
	full       bool
	next       int64 // the offset to ask for next
}

// newReply starts a reply at offset.
func newReply(offset int64, maxRecords, maxBytes int) *reply {
	return &reply{maxRecords: maxRecords, maxBytes: maxBytes, next: offset}
}

// add appends r unless the reply is full; it reports whether r was added.
func (rp *reply) add(r *kgo.Record) bool {
	if rp.full {
		return false
	}
	n := recordBytes(r)
	if !rp.fits(n) {
		return false
	}
	rp.records = append(rp.records, r)
	rp.bytes += n
	rp.n++
	rp.next = r.Offset + 1
	return true
}

// fits reports whether a record of n bytes fits the reply, and marks it
// full when it does not.
func (rp *reply) fits(n int) bool {
	if rp.n > 0 && (rp.n >= rp.maxRecords || rp.bytes+n > rp.maxBytes) {
		rp.full = true
	}
	return !rp.full
}

// packedPart is the packed records [i, j) of p in a reply.
type packedPart struct {
	p    *packedRecords
	i, j int
}

// addPacked appends the records of p from index i on while they fit, and
// returns the index of the first it did not append.
func (rp *reply) addPacked(p *packedRecords, i int) int {
	j := i
	for ; j < p.len() && rp.fits(int(p.sizes[j])); j++ {
		rp.bytes += int(p.sizes[j])
		rp.n++
	}
	if j > i {
		rp.parts = append(rp.parts, packedPart{p, i, j})
		rp.next = p.offsets[j-1] + 1
	}
	return j
}

// through records that every data record before end has been offered, so
// that the next offset to ask for is at least end.
func (rp *reply) through(end int64) {
	if !rp.full && end > rp.next {
		rp.next = end
	}
}

// compactRecords returns copies of recs whose keys, values and headers
// share one new buffer of just their bytes.
func compactRecords(recs []*kgo.Record) []*kgo.Record {
	n := 0
	for _, r := range recs {
		n += recordBytes(r)
	}
	buf := make([]byte, 0, n)
	clone := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		buf = append(buf, b...)
		return buf[len(buf)-len(b) : len(buf) : len(buf)]
	}
	out := make([]*kgo.Record, len(recs))
	copies := make([]kgo.Record, len(recs))
	for i, r := range recs {
		c := &copies[i]
		*c = *r
		c.Key, c.Value = clone(r.Key), clone(r.Value)
		if len(r.Headers) > 0 {
			c.Headers = make([]kgo.RecordHeader, len(r.Headers))
			for j, h := range r.Headers {
				c.Headers[j] = kgo.RecordHeader{Key: h.Key, Value: clone(h.Value)}
			}
		}
		out[i] = c
	}
	return out
}

func recordBytes(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}
