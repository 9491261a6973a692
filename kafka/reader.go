package kafka

import (
	"context"
	"errors"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Bounds of a shared partition reader's window of recent records.
const (
	// DefaultWindowBytes bounds the key and value bytes a window keeps.
	DefaultWindowBytes = 8 << 20
	// DefaultWindowRecords bounds the records a window keeps.
	DefaultWindowRecords = 100000
	// readerFetchWait is how long a reader's fetch waits at the end of the
	// log; it is only the idle request rate, new records come at once.
	readerFetchWait = 500 * time.Millisecond
	// readerBackoff is the pause after a failed fetch.
	readerBackoff = 250 * time.Millisecond
)

// readerKey names a partition of a cluster.
type readerKey struct {
	topic     string
	partition int32
}

// readerSet holds the shared readers of one Cluster.
type readerSet struct {
	mu      sync.Mutex
	readers map[readerKey]*partitionReader
}

// partitionReader tails one partition for every subscriber of a Cluster:
// one broker fetch stream, whatever the number of subscribers. It keeps the
// records from start (inclusive) to next (exclusive) in a window bounded in
// bytes and records; subscribers that fall behind the window read from Kafka
// on their own until they reach it again. It starts at the end of the log
// when its first subscriber comes and stops when its last one leaves.
type partitionReader struct {
	k      *Cluster
	key    readerKey
	cancel context.CancelFunc
	refs   int // guarded by the readerSet's mu

	mu         sync.Mutex
	positioned bool // start and next are known
	records    []*kgo.Record
	bytes      int
	start      int64
	next       int64
	changed    chan struct{} // closed and replaced at every change
}

// acquireReader returns the running reader of topic/partition, starting one
// if there is none. Each acquire is paired with releaseReader.
func (k *Cluster) acquireReader(topic string, partition int32) *partitionReader {
	key := readerKey{topic, partition}
	rs := &k.readers
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if r := rs.readers[key]; r != nil {
		r.refs++
		return r
	}
	if rs.readers == nil {
		rs.readers = make(map[readerKey]*partitionReader)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &partitionReader{k: k, key: key, cancel: cancel, refs: 1, changed: make(chan struct{})}
	rs.readers[key] = r
	go r.run(ctx)
	return r
}

// releaseReader gives back a reader; the last release stops it.
func (k *Cluster) releaseReader(r *partitionReader) {
	rs := &k.readers
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r.refs--
	if r.refs == 0 {
		delete(rs.readers, r.key)
		r.cancel()
	}
}

// runningReader returns the reader of topic/partition if one runs.
func (k *Cluster) runningReader(topic string, partition int32) *partitionReader {
	rs := &k.readers
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.readers[readerKey{topic, partition}]
}

// Readers returns the number of shared partition readers running.
func (k *Cluster) Readers() int {
	rs := &k.readers
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.readers)
}

// run fetches the partition from its end until ctx is canceled.
func (r *partitionReader) run(ctx context.Context) {
	log := r.k.pool.log.With("topic", r.key.topic, "partition", r.key.partition)
	defer func() {
		if p := recover(); p != nil {
			log.Error("kafka: partition reader panic", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	var lastErr string
	failed := func(err error) {
		if err.Error() != lastErr {
			lastErr = err.Error()
			log.Warn("kafka: partition reader: " + lastErr)
		}
		sleep(ctx, readerBackoff)
	}
	next, err := r.position(ctx, -1)
	for err != nil {
		if ctx.Err() != nil {
			return
		}
		failed(err)
		next, err = r.position(ctx, -1)
	}
	r.reset(next)
	for ctx.Err() == nil {
		recs, err := r.k.fetchWait(ctx, r.key.topic, r.key.partition, next, readerFetchWait)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, kerr.OffsetOutOfRange):
			// Retention removed what we wanted, or the log was truncated:
			// go on from the end of what remains.
			if n, perr := r.position(ctx, -1); perr == nil {
				log.Warn("kafka: partition reader repositioned", "from", next, "to", n)
				next = n
				r.reset(n)
			}
		case err != nil:
			failed(err)
		case len(recs) > 0:
			lastErr = ""
			next = recs[len(recs)-1].Offset + 1
			r.append(recs, next)
		}
	}
}

// position looks up the offset for timestamp (-1 latest).
func (r *partitionReader) position(ctx context.Context, timestamp int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, r.k.cfg.RequestTimeout.Duration())
	defer cancel()
	return r.k.ListOffset(ctx, r.key.topic, r.key.partition, timestamp)
}

// append adds fetched records, evicts the oldest beyond the window bounds and
// wakes the waiting subscribers.
func (r *partitionReader) append(recs []*kgo.Record, next int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, recs...)
	for _, rec := range recs {
		r.bytes += recordBytes(rec)
	}
	r.next = next
	drop := 0
	for drop < len(r.records)-1 && (r.bytes > DefaultWindowBytes || len(r.records)-drop > DefaultWindowRecords) {
		r.bytes -= recordBytes(r.records[drop])
		r.records[drop] = nil
		drop++
	}
	if drop > 0 {
		r.records = r.records[drop:]
	}
	if len(r.records) > 0 {
		r.start = r.records[0].Offset
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// reset empties the window and restarts it at offset.
func (r *partitionReader) reset(offset int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.positioned = true
	r.records, r.bytes, r.start, r.next = nil, 0, offset, offset
	close(r.changed)
	r.changed = make(chan struct{})
}

// windowRead is what a subscriber gets from the window at its cursor.
type windowRead struct {
	records []*kgo.Record // from the cursor on, possibly empty
	behind  bool          // the cursor is before the window: read Kafka directly
	changed <-chan struct{}
}

// read returns up to maxRecords records (at least one if any) of at most
// maxBytes from offset on.
func (r *partitionReader) read(offset int64, maxRecords, maxBytes int) windowRead {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.positioned {
		return windowRead{changed: r.changed}
	}
	if offset < r.start {
		return windowRead{behind: true, changed: r.changed}
	}
	i := sort.Search(len(r.records), func(i int) bool { return r.records[i].Offset >= offset })
	end := i + limitRecords(r.records[i:], maxRecords, maxBytes)
	return windowRead{records: r.records[i:end:end], changed: r.changed}
}

// fetchFromWindow serves a plain fetch from the window: records from offset
// on when the window covers offset, waiting up to wait at its end. ok is
// false when the window does not cover offset.
func (r *partitionReader) fetchFromWindow(ctx context.Context, offset int64, maxBytes int, wait time.Duration) (recs []*kgo.Record, ok bool) {
	r.mu.Lock()
	covered := r.positioned && offset >= r.start && offset <= r.next
	r.mu.Unlock()
	if !covered {
		return nil, false
	}
	w := r.read(offset, DefaultWindowRecords, maxBytes)
	if w.behind {
		return nil, false
	}
	if len(w.records) > 0 {
		return w.records, true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.changed:
	case <-t.C:
	case <-ctx.Done():
	}
	w = r.read(offset, DefaultWindowRecords, maxBytes)
	if w.behind {
		return nil, false
	}
	return w.records, true
}

// limitRecords returns how many of recs, from the first, fit in maxRecords
// and maxBytes; at least one when recs is not empty, so that a record larger
// than maxBytes is still delivered.
func limitRecords(recs []*kgo.Record, maxRecords, maxBytes int) int {
	n, size := 0, 0
	for n < len(recs) && (n == 0 || (n < maxRecords && size+recordBytes(recs[n]) <= maxBytes)) {
		size += recordBytes(recs[n])
		n++
	}
	return n
}

func recordBytes(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
