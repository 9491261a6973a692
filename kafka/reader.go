package kafka

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Shared partition readers.
const (
	// DefaultWindowRecords bounds the records a window keeps; its bytes
	// are bounded by the cluster's window_bytes.
	DefaultWindowRecords = 100000
	// tailFetchWait is how long the readers' consumer waits at the end of
	// the log. New records of the partitions in a waiting fetch come at
	// once; a partition added meanwhile joins the next fetch, so this bounds
	// the first delivery of a new reader (and sets the idle request rate:
	// one fetch per broker per wait).
	tailFetchWait = 100 * time.Millisecond
	// readerLinger keeps a reader that plain fetches waited on alive this
	// long after their last wait, so that a polling client finds it again.
	readerLinger = 10 * time.Second
)

// readerKey names a partition of a cluster.
type readerKey struct {
	topic     string
	partition int32
}

// readerSet holds the shared readers of one Cluster and the one franz-go
// consumer that fetches for all of them: a single fetch request per broker
// covers every tailed partition, so readers never queue behind each other's
// long polls, and the request client is never blocked by a long poll.
type readerSet struct {
	mu       sync.Mutex
	readers  map[readerKey]*partitionReader
	consumer *kgo.Client
	stop     context.CancelFunc
	done     chan struct{}
	closed   bool
}

// partitionReader tails one partition for every subscriber of a Cluster. It
// keeps the records from start (inclusive) to next (exclusive) in a window
// bounded in bytes and records; subscribers that fall behind the window
// read Kafka on their own until they reach it again. It starts at the end of
// the log when its first user comes and stops when its last one leaves.
type partitionReader struct {
	key      readerKey
	maxBytes int // the window's byte bound

	// Guarded by the readerSet's mu.
	refs      int
	leased    bool      // a plain fetch holds a reference until linger passes
	lastLease time.Time // when a plain fetch last waited on the reader

	mu      sync.Mutex
	records []*kgo.Record
	bytes   int
	start   int64
	next    int64
	changed chan struct{} // closed and replaced at every append
	err     error         // the partition is gone
}

// acquireReader returns the reader of topic/partition, starting one at the
// end of the log if there is none. Each acquire is paired with
// releaseReader.
func (k *Cluster) acquireReader(ctx context.Context, topic string, partition int32) (*partitionReader, error) {
	rs := &k.readers
	key := readerKey{topic, partition}
	rs.mu.Lock()
	if r := rs.readers[key]; r != nil {
		r.refs++
		rs.mu.Unlock()
		return r, nil
	}
	rs.mu.Unlock()

	// Position before registering, without holding the lock over a request.
	ctx, cancel := context.WithTimeout(ctx, k.cfg.RequestTimeout.Duration())
	defer cancel()
	end, err := k.ListOffset(ctx, topic, partition, -1)
	if err != nil {
		return nil, err
	}

	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return nil, fmt.Errorf("kafka: cluster client closed")
	}
	if r := rs.readers[key]; r != nil { // another user started it meanwhile
		r.refs++
		return r, nil
	}
	if err := k.startConsumer(); err != nil {
		return nil, err
	}
	r := &partitionReader{key: key, maxBytes: k.cfg.WindowBytes, refs: 1, start: end, next: end, changed: make(chan struct{})}
	if rs.readers == nil {
		rs.readers = make(map[readerKey]*partitionReader)
	}
	rs.readers[key] = r
	rs.consumer.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(end)}})
	return r, nil
}

// releaseReader gives back a reader; the last release stops it.
func (k *Cluster) releaseReader(r *partitionReader) {
	rs := &k.readers
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r.refs--
	if r.refs == 0 && rs.readers[r.key] == r {
		delete(rs.readers, r.key)
		if rs.consumer != nil {
			rs.consumer.RemoveConsumePartitions(map[string][]int32{r.key.topic: {r.key.partition}})
		}
	}
}

// leaseReader returns the reader of topic/partition for a plain fetch that
// waits at the end of the log, keeping it alive for readerLinger after the
// last such wait.
func (k *Cluster) leaseReader(ctx context.Context, topic string, partition int32) (*partitionReader, error) {
	r, err := k.acquireReader(ctx, topic, partition)
	if err != nil {
		return nil, err
	}
	rs := &k.readers
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r.lastLease = time.Now()
	if r.leased {
		r.refs-- // the lease already holds a reference
		return r, nil
	}
	r.leased = true
	var expire func()
	expire = func() {
		defer k.pool.recoverPanic("expiring a reader lease")
		rs.mu.Lock()
		idle := time.Since(r.lastLease)
		if idle < readerLinger {
			rs.mu.Unlock()
			time.AfterFunc(readerLinger-idle, expire)
			return
		}
		r.leased = false
		rs.mu.Unlock()
		k.releaseReader(r)
	}
	time.AfterFunc(readerLinger, expire)
	return r, nil
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

// startConsumer creates the readers' consumer on first use. Callers hold
// the readerSet's mu.
func (k *Cluster) startConsumer() error {
	rs := &k.readers
	if rs.consumer != nil {
		return nil
	}
	opts := append(k.opts[:len(k.opts):len(k.opts)],
		kgo.FetchMaxWait(tailFetchWait),
		kgo.FetchMaxPartitionBytes(k.cfg.FetchMaxBytes),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs.consumer, rs.stop, rs.done = cl, cancel, make(chan struct{})
	go k.consume(ctx, cl, rs.done)
	return nil
}

// consume hands every fetched partition to its reader until ctx ends. A
// panic while handling one poll is logged and the loop goes on: every
// subscriber of the cluster depends on it.
func (k *Cluster) consume(ctx context.Context, cl *kgo.Client, done chan struct{}) {
	defer close(done)
	var lastErr string
	for ctx.Err() == nil {
		k.deliverPoll(ctx, cl.PollFetches(ctx), &lastErr)
	}
}

// deliverPoll appends one poll's records to their readers and marks the
// readers of partitions that are gone.
func (k *Cluster) deliverPoll(ctx context.Context, fetches kgo.Fetches, lastErr *string) {
	defer func() {
		if p := recover(); p != nil {
			k.pool.log.Error("kafka: shared reader panic", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	fetches.EachError(func(topic string, partition int32, err error) {
		if ctx.Err() != nil {
			return
		}
		if err.Error() != *lastErr {
			*lastErr = err.Error()
			k.pool.log.Warn("kafka: shared reader", "topic", topic, "partition", partition, "err", err)
		}
		if r := k.runningReader(topic, partition); r != nil && gone(err) {
			r.fail(ErrTopicNotFound)
		}
	})
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		if r := k.runningReader(p.Topic, p.Partition); r != nil {
			r.append(p.Records)
		}
	})
}

// close stops the readers' consumer.
func (rs *readerSet) close() {
	rs.mu.Lock()
	rs.closed = true
	cl, stop, done := rs.consumer, rs.stop, rs.done
	rs.mu.Unlock()
	if cl == nil {
		return
	}
	stop()
	cl.Close()
	<-done
}

// append adds fetched records (those not already held), evicts the oldest
// beyond the window bounds and wakes the waiting users.
func (r *partitionReader) append(recs []*kgo.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	added := false
	for _, rec := range recs {
		if rec.Offset < r.next {
			continue // buffered before the reader was (re)positioned
		}
		r.records = append(r.records, rec)
		r.bytes += recordBytes(rec)
		r.next = rec.Offset + 1
		added = true
	}
	if !added {
		return
	}
	drop := 0
	for drop < len(r.records)-1 && (r.bytes > r.maxBytes || len(r.records)-drop > DefaultWindowRecords) {
		r.bytes -= recordBytes(r.records[drop])
		r.records[drop] = nil
		drop++
	}
	if drop > 0 {
		r.records = r.records[drop:]
	}
	if first := r.records[0].Offset; first > r.start {
		r.start = first
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// fail records that the partition is gone and wakes the waiting users.
func (r *partitionReader) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
	close(r.changed)
	r.changed = make(chan struct{})
}

// gone reports whether a fetch error means the partition no longer exists.
func gone(err error) bool {
	return errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID)
}

// windowRead is what a user gets from the window at its cursor.
type windowRead struct {
	records []*kgo.Record // from the cursor on, possibly empty
	behind  bool          // the cursor is before the window: read Kafka directly
	err     error         // the partition is gone (set when records is empty)
	changed <-chan struct{}
}

// read returns up to maxRecords records (at least one if any) of at most
// maxBytes from offset on.
func (r *partitionReader) read(offset int64, maxRecords, maxBytes int) windowRead {
	r.mu.Lock()
	defer r.mu.Unlock()
	if offset < r.start {
		return windowRead{behind: true, changed: r.changed}
	}
	i := sort.Search(len(r.records), func(i int) bool { return r.records[i].Offset >= offset })
	end := i + limitRecords(r.records[i:], maxRecords, maxBytes)
	w := windowRead{records: r.records[i:end:end], changed: r.changed}
	if end == i {
		w.err = r.err
	}
	return w
}

// covers reports whether the window holds, or is about to receive, offset.
func (r *partitionReader) covers(offset int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return offset >= r.start && offset <= r.next
}

// waitRead reads from offset on, waiting up to wait for records when the
// window has none yet. ok is false when offset is before the window.
func (r *partitionReader) waitRead(ctx context.Context, offset int64, maxBytes int, wait time.Duration) (recs []*kgo.Record, ok bool) {
	w := r.read(offset, DefaultWindowRecords, maxBytes)
	if w.behind || len(w.records) > 0 {
		return w.records, !w.behind
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-w.changed:
	case <-t.C:
	case <-ctx.Done():
	}
	w = r.read(offset, DefaultWindowRecords, maxBytes)
	return w.records, !w.behind
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
