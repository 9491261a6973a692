package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Shared partition readers.
const (
	// DefaultMaxRecords bounds the records of one reply or push.
	DefaultMaxRecords = 100000
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
	topicIDs map[string][16]byte // the incarnation the consumer reads of each topic
	consumer *kgo.Client
	stop     context.CancelFunc
	done     chan struct{}
	closed   bool
}

// partitionReader tails one partition for every user of a Cluster: the
// readers' consumer puts what it fetches into the record cache and wakes the
// users waiting at the end of the log. It starts at the end of the log when
// its first user comes and stops when its last one leaves. It reads one
// incarnation of its topic: a topic deleted and created again gets a new
// reader.
type partitionReader struct {
	key     readerKey
	topicID [16]byte // the topic's incarnation, from metadata when it started

	// Guarded by the readerSet's mu.
	refs      int
	leased    bool      // a plain fetch holds a reference until linger passes
	lastLease time.Time // when a plain fetch last waited on the reader

	mu      sync.Mutex
	end     int64         // the end of the readable log, as last seen
	changed chan struct{} // closed and replaced when records came or end moved
	err     error         // why the reader stopped: the partition is gone, or the consumer failed on it
}

// cacheKey is the key of the reader's records in the record cache.
func (r *partitionReader) cacheKey() cacheKey { return cacheKey{r.key, r.topicID} }

// acquireReader returns the reader of the current incarnation of
// topic/partition, starting one at the end of the log if there is none.
// With fresh, a metadata request names the incarnation even when a reader
// runs (a subscription starting must not read a topic deleted since).
// Without it, a running reader of the incarnation the client's cached
// metadata names is taken as it is, so that a fetch polling the end of the
// log costs no metadata request; one is made only to start a reader, or
// when the cached incarnation is not the one a running reader reads.
// Each acquire is paired with releaseReader.
func (k *Cluster) acquireReader(ctx context.Context, topic string, partition int32, fresh bool) (*partitionReader, error) {
	rs := &k.readers
	key := readerKey{topic, partition}
	ctx, cancel := context.WithTimeout(ctx, k.cfg.RequestTimeout.Duration())
	defer cancel()
	if !fresh {
		if info, err := k.lookup(ctx, topic, partition, false); err == nil {
			if r := rs.reuse(key, info.topicID); r != nil {
				return r, nil
			}
		}
	}
	// Fresh metadata names the incarnation; positioning happens before
	// registering, without holding the lock over a request.
	info, err := k.lookup(ctx, topic, partition, true)
	if err != nil {
		return nil, err
	}
	if r := rs.reuse(key, info.topicID); r != nil {
		return r, nil
	}
	end, err := k.ListOffset(ctx, topic, partition, -1)
	if err != nil {
		return nil, err
	}

	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.closed {
		return nil, fmt.Errorf("kafka: cluster client closed")
	}
	if r := rs.reuseLocked(key, info.topicID); r != nil { // another user started it meanwhile
		return r, nil
	}
	if err := k.startConsumer(); err != nil {
		return nil, err
	}
	if id, ok := rs.topicIDs[topic]; ok && id != info.topicID {
		// The topic was deleted and created again. franz-go never adopts
		// a new topic id (it fails the old one with UNKNOWN_TOPIC_ID until
		// the topic is purged): the readers of the old one end, and the
		// consumer forgets the topic before it reads the new one.
		rs.retireTopicLocked(topic, ErrTopicNotFound)
	} else if old := rs.readers[key]; old != nil {
		rs.retireLocked(old, old.err)
	}
	r := &partitionReader{key: key, topicID: info.topicID, refs: 1, end: end, changed: make(chan struct{})}
	if rs.readers == nil {
		rs.readers = make(map[readerKey]*partitionReader)
		rs.topicIDs = make(map[string][16]byte)
	}
	rs.readers[key] = r
	rs.topicIDs[topic] = info.topicID
	rs.consumer.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(end)}})
	go k.confirmIncarnation(r, rs.consumer)
	return r, nil
}

// confirmIncarnation makes sure that the consumer reads the incarnation of
// the topic that reader r started on, or ends r. franz-go retries without a
// word a topic its metadata does not find: a topic deleted (or created
// again) between the metadata request that started r and the consumer's
// first would leave r's users waiting for ever, with no fetch to fail.
// Once the consumer has loaded r's partition, or failed to, a fresh
// metadata request still naming r's incarnation shows that the consumer
// loaded that one (a later deletion fails its fetches); one naming none or
// another ends the readers of the incarnation. It returns when r stops.
func (k *Cluster) confirmIncarnation(r *partitionReader, consumer *kgo.Client) {
	defer k.pool.recoverPanic("confirming a reader's incarnation")
	for {
		time.Sleep(readerBackoff)
		if !k.readers.runs(r) {
			return
		}
		leader, _, loadErr := consumer.PartitionLeader(r.key.topic, r.key.partition)
		if leader < 0 && loadErr == nil {
			continue // the consumer has not loaded the partition yet
		}
		ctx, cancel := context.WithTimeout(context.Background(), k.cfg.RequestTimeout.Duration())
		info, err := k.lookup(ctx, r.key.topic, r.key.partition, true)
		cancel()
		switch {
		case errors.Is(err, ErrTopicNotFound) || errors.Is(err, ErrPartitionNotFound) || (err == nil && info.topicID != r.topicID):
			k.readers.retireTopic(r.key.topic, r.topicID, ErrTopicNotFound)
			return
		case err == nil && loadErr == nil:
			return
		}
	}
}

// reuse returns the running reader of key, with a new reference, if it
// reads incarnation topicID and has not stopped.
func (rs *readerSet) reuse(key readerKey, topicID [16]byte) *partitionReader {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.reuseLocked(key, topicID)
}

// reuseLocked is reuse for callers that hold mu.
func (rs *readerSet) reuseLocked(key readerKey, topicID [16]byte) *partitionReader {
	r := rs.readers[key]
	if r == nil || r.topicID != topicID || !r.live() {
		return nil
	}
	r.refs++
	return r
}

// retire stops reader r with err (nil: it only stops being found) if it
// still runs: its users are told, and new users get a new reader.
func (rs *readerSet) retire(r *partitionReader, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.retireLocked(r, err)
}

// retireLocked is retire for callers that hold mu.
func (rs *readerSet) retireLocked(r *partitionReader, err error) {
	if rs.readers[r.key] != r {
		return
	}
	delete(rs.readers, r.key)
	if rs.consumer != nil {
		rs.consumer.RemoveConsumePartitions(map[string][]int32{r.key.topic: {r.key.partition}})
	}
	if err != nil {
		r.fail(err)
	}
}

// readIDs returns the incarnation the consumer reads of each topic.
func (rs *readerSet) readIDs() map[string][16]byte {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return maps.Clone(rs.topicIDs)
}

// retireTopic stops every reader of topic with err if they read
// incarnation id (see retireTopicLocked).
func (rs *readerSet) retireTopic(topic string, id [16]byte, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if cur, ok := rs.topicIDs[topic]; ok && cur == id {
		rs.retireTopicLocked(topic, err)
	}
}

// retireTopicLocked stops every reader of topic with err and makes the
// consumer forget the topic, so that it learns its incarnation afresh.
// Callers hold mu.
func (rs *readerSet) retireTopicLocked(topic string, err error) {
	for key, r := range rs.readers {
		if key.topic == topic {
			delete(rs.readers, key)
			r.fail(err)
		}
	}
	delete(rs.topicIDs, topic)
	if rs.consumer != nil {
		rs.consumer.PurgeTopicsFromConsuming(topic)
	}
}

// releaseReader gives back a reader; the last release stops it.
func (k *Cluster) releaseReader(r *partitionReader) {
	rs := &k.readers
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r.refs--
	if r.refs == 0 {
		rs.retireLocked(r, nil)
	}
}

// leaseReader returns the reader of topic/partition for a plain fetch that
// waits at the end of the log, keeping it alive for readerLinger after the
// last such wait. A running reader is found without a metadata request
// (see acquireReader): the fetch read under the cached metadata's
// incarnation too.
func (k *Cluster) leaseReader(ctx context.Context, topic string, partition int32) (*partitionReader, error) {
	r, err := k.acquireReader(ctx, topic, partition, false)
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

// runs reports whether reader r still runs: it was not stopped, nor the
// consumer closed.
func (rs *readerSet) runs(r *partitionReader) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return !rs.closed && rs.readers[r.key] == r
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
		// A reset (after OFFSET_OUT_OF_RANGE, or an epoch the new leader
		// does not know) jumps to the end: the cache never takes a jump
		// for the log, and users read what it skipped from Kafka.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // their offsets join runs; they are not delivered
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
	// A poll's subscribers are woken on this goroutine until records of
	// the next poll wait (see deliverPoll).
	pending := func() bool { return cl.BufferedFetchRecords() > 0 }
	for ctx.Err() == nil {
		k.deliverPoll(ctx, cl.PollFetches(ctx), pending, &lastErr)
	}
}

// deliverPoll puts one poll's records into the record cache, under the
// topic id the broker answered with, tells the readers where the log ends,
// and stops the readers of partitions the consumer failed on: their users
// hear why. A data loss the consumer reports (its reset may have skipped
// records, or the log changed under it) drops the partition's cached
// records; a partition that is gone (its topic deleted, perhaps created
// again) ends every reader of the topic. The subscribers parked on the
// last partition that changed run on the calling goroutine until pending
// reports records of the next poll.
func (k *Cluster) deliverPoll(ctx context.Context, fetches kgo.Fetches, pending func() bool, lastErr *string) {
	defer func() {
		if p := recover(); p != nil {
			k.pool.log.Error("kafka: shared reader panic", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	rs := &k.readers
	// A partition that is gone ends the readers of its topic, unless they
	// read a newer incarnation than the one the poll failed on: one that
	// started while the poll was handled.
	var (
		readIDs    map[string][16]byte
		goneTopics []string
	)
	fetches.EachError(func(topic string, partition int32, err error) {
		if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
			return
		}
		if err.Error() != *lastErr {
			*lastErr = err.Error()
			k.pool.log.Warn("kafka: shared reader", "topic", topic, "partition", partition, "err", err)
		}
		r := k.runningReader(topic, partition)
		if lost, ok := errors.AsType[*kgo.ErrDataLoss](err); ok {
			k.cache.drop(readerKey{topic, partition})
			if r != nil {
				r.reset(lost.ResetTo)
			}
			return
		}
		if gone(err) {
			if readIDs == nil {
				readIDs = rs.readIDs()
			}
			if !slices.Contains(goneTopics, topic) {
				goneTopics = append(goneTopics, topic)
			}
			return
		}
		if r != nil {
			rs.retire(r, k.fetchCause(ctx, err))
		}
	})
	for _, topic := range goneTopics {
		if id, ok := readIDs[topic]; ok {
			rs.retireTopic(topic, id, ErrTopicNotFound)
		}
	}
	// The subscribers parked on the last partition that changed are woken
	// on this goroutine once the poll is handled: a record reaches them
	// with no goroutine hand-off. Those of other partitions are woken on
	// wakers, so that partitions are served side by side, and so are the
	// rest of them once records of the next poll are pending: a fan-out
	// slower than the records arrive (a busy machine) does not hold the
	// next one up.
	var changed <-chan struct{}
	defer func() {
		if changed != nil {
			parked.fire(changed, pending)
		}
	}()
	fetches.EachTopic(func(t kgo.FetchTopic) {
		for i := range t.Partitions {
			p := &t.Partitions[i]
			if len(p.Records) == 0 {
				continue
			}
			key := cacheKey{readerKey{t.Topic, p.Partition}, t.TopicID}
			k.cache.trimBefore(key, p.LogStartOffset)
			k.cacheConsumed(key, p.Records)
			r := k.runningReader(t.Topic, p.Partition)
			// A broker that names no topic id in fetch answers (before
			// Kafka 3.1) reads the incarnation the reader started on:
			// franz-go does not read another under the same name.
			if r != nil && (r.topicID == t.TopicID || t.TopicID == ([16]byte{})) {
				end := p.Records[len(p.Records)-1].Offset + 1
				if ch := r.advance(max(end, p.LastStableOffset)); ch != nil {
					if changed != nil {
						parked.fireLater(changed)
					}
					changed = ch
				}
			}
		}
	})
}

// cacheConsumed puts records of the readers' consumer into the cache: each
// run of consecutive offsets is a chunk. Control records join runs but are
// not data; a jump between two records (an aborted transaction, or a reset
// of the consumer) is left out, for users to read from Kafka.
func (k *Cluster) cacheConsumed(key cacheKey, recs []*kgo.Record) {
	var runs []run
	for len(recs) > 0 {
		n := 1
		for n < len(recs) && recs[n].Offset == recs[n-1].Offset+1 {
			n++
		}
		r := run{first: recs[0].Offset, next: recs[n-1].Offset + 1, records: recs[:n]}
		if slices.ContainsFunc(r.records, isControl) {
			r.records = slices.DeleteFunc(slices.Clone(r.records), isControl)
		}
		runs = append(runs, r)
		recs = recs[n:]
	}
	k.cache.insert(key, unknownEpoch, runs...)
}

func isControl(r *kgo.Record) bool { return r.Attrs.IsControl() }

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

// advance records that the readable log ends at end or later and wakes the
// waiting users but those parked on the change channel, which it returns
// (nil if the end did not move) for its caller to fire. The end never
// moves back here: a poll that saw less than the reader knows is stale.
func (r *partitionReader) advance(end int64) (changed <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if end <= r.end {
		return nil
	}
	r.end = end
	return r.nextChange()
}

// reset records where the consumer goes on after a data loss (the log was
// truncated or deleted under it), even before the end last seen, and wakes
// the waiting users.
func (r *partitionReader) reset(end int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.end = end
	parked.fireLater(r.nextChange())
}

// nextChange closes the change channel and makes the next one; it returns
// the closed one, whose parked functions its caller fires. Callers hold
// mu.
func (r *partitionReader) nextChange() <-chan struct{} {
	closed := r.changed
	close(closed)
	r.changed = make(chan struct{})
	return closed
}

// live reports whether the reader's partition still exists.
func (r *partitionReader) live() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err == nil
}

// state returns what a user needs to decide whether to wait: the channel
// closed at the next change, the end of the readable log as last seen, and
// why the reader stopped, if it did.
func (r *partitionReader) state() (changed <-chan struct{}, end int64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed, r.end, r.err
}

// fail records why the reader stopped and wakes the waiting users.
func (r *partitionReader) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return
	}
	r.err = err
	parked.fireLater(r.nextChange())
}

// gone reports whether a fetch error means the partition no longer exists.
func gone(err error) bool {
	return errors.Is(err, kerr.UnknownTopicOrPartition) || errors.Is(err, kerr.UnknownTopicID)
}

// waitChange waits until changed is closed or d passes; it reports false
// when ctx ended first.
func waitChange(ctx context.Context, changed <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	return true
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
