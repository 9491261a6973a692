package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// fetchReply answers a fetch at out.next into out, from the record cache, or
// from Kafka where the cache does not hold the offset. It never makes the
// broker wait: at the end of the log it waits on the partition's shared
// reader, so that one session's wait does not hold up the fetches queued
// behind it on the client's connection. When nothing arrives, the broker
// has the last word, which also reports a broker that went away.
func (k *Cluster) fetchReply(ctx context.Context, topic string, partition int32, out *reply) error {
	waited := k.waitAtTail(ctx, topic, partition, out.next)
	if err := k.readAt(ctx, topic, partition, out); err != nil || out.n > 0 || waited {
		if err == nil && (out.full || 2*out.bytes >= out.maxBytes) {
			k.keepAhead(ctx, out)
		}
		return err
	}
	r, err := k.leaseReader(ctx, topic, partition)
	if err != nil {
		return nil // the empty answer stands
	}
	changed, end, _ := r.state()
	if end > out.next {
		// Records came between the broker's empty answer and the
		// reader's start, which waits only for later ones.
		return k.readAt(ctx, topic, partition, out)
	}
	if !waitChange(ctx, changed, k.cfg.FetchMaxWait.Duration()) {
		return nil
	}
	return k.readAt(ctx, topic, partition, out)
}

// readAheadReplies is how many replies' worth of records the record cache
// is kept ahead of a fetch loop: with two, the broker fetch and decoding of
// the next goes on while the client reads one from the cache, as a Kafka
// consumer fetches while its application works.
const readAheadReplies = 2

// keepAhead keeps the record cache readAheadReplies replies ahead of a
// client that reads a partition fetch after fetch (the APISIX fetch loop):
// after a reply of at least half its bytes (a reply that small at the end
// of the log is not read ahead), which the client follows with a fetch at
// next, the records from next on that the cache does not hold yet are
// fetched and decoded in the background (packed for a packed reply), one
// broker fetch after the other, while the reply travels and the client
// decodes it. The broker requests wait in the session's lane, so one fast
// reader takes no more of the brokers than its fair share; they run only
// with a free read-ahead slot and when no fetch of that offset runs
// already, and read no further than a quarter of the partition's window,
// so that what other sessions read stays cached, nor past the end of the
// log the last broker answer gave, nor while the partition has no room for
// them (see recordCache.roomAhead).
func (k *Cluster) keepAhead(ctx context.Context, out *reply) {
	key, packed, from := out.key, out.packed, out.next
	want, most := readAheadReplies*int(k.cfg.FetchMaxBytes), k.cache.maxPartBytes/4
	// A step fetches a reply's worth, and may decode as much again.
	room := func(at int64) bool { return k.cache.roomAhead(key, at, 2*int(k.cfg.FetchMaxBytes)) }
	if at, ahead := k.cache.heldFrom(key, from, want, most); ahead || !room(at) {
		return
	}
	select {
	case k.readAheads <- struct{}{}:
	default:
		return
	}
	lane := k.turns.laneOf(ctx)
	// fetchAt fetches and decodes the records from at on into the cache,
	// which at was marked as fetching for; it reports whether that worked.
	fetchAt := func(at int64) bool {
		defer k.fetching.end(key.readerKey, at)
		ctx, cancel := context.WithTimeout(withLane(context.Background(), lane), k.cfg.RequestTimeout.Duration())
		defer cancel()
		// The records go into the cache; an error is the next fetch's
		// to report.
		ahead := newReply(at, DefaultMaxRecords, int(k.cfg.FetchMaxBytes))
		ahead.packed = packed
		return k.fetchWait(ctx, key, true, at, 0, ahead) == nil
	}
	go func() {
		defer func() { <-k.readAheads }()
		defer k.pool.recoverPanic("reading ahead of a fetch loop")
		for last := int64(-1); ; {
			at, enough := k.cache.heldFrom(key, from, want, most)
			if enough || at == last || !room(at) {
				return // read ahead, no further for the last step, or no room
			}
			last = at
			if done, first := k.fetching.begin(key.readerKey, at); !first {
				// Another fetch of those records runs (a decoding ahead
				// of its answer's rest, another session's): its records
				// are the next step's.
				if !waitChange(context.Background(), done, k.cfg.RequestTimeout.Duration()) {
					return
				}
				continue
			}
			if !fetchAt(at) {
				return
			}
		}
	}()
}

// waitAtTail waits, up to the cluster's fetch wait, when the partition's
// shared reader runs and sees the log end at offset: a client polling the
// end of the log then waits for the reader's next records instead of
// asking the broker on every poll. It reports whether it waited; the
// broker still has the last word after the wait.
func (k *Cluster) waitAtTail(ctx context.Context, topic string, partition int32, offset int64) bool {
	r := k.runningReader(topic, partition)
	if r == nil {
		return false
	}
	changed, end, err := r.state()
	if err != nil || offset != end || k.cache.holds(r.cacheKey(), offset) {
		return false
	}
	waitChange(ctx, changed, k.cfg.FetchMaxWait.Duration())
	return true
}

// readAt reads topic/partition from out.next on into out: from the record
// cache while it holds the offsets, else from Kafka without waiting. The
// first record is the one at out.next, unless that offset holds no data
// record: a read that would add no record but moved past such offsets goes
// on from there. Then out.next is the offset to ask for next. The cache
// answers only under the topic incarnation a check confirmed.
func (k *Cluster) readAt(ctx context.Context, topic string, partition int32, out *reply) error {
	info, err := k.lookup(ctx, topic, partition, false)
	if err != nil {
		return err
	}
	key := cacheKey{readerKey{topic, partition}, info.topicID}
	if k.cache.holds(key, out.next) {
		if key.topicID, err = k.confirmCached(ctx, key.readerKey); err != nil {
			return err
		}
	}
	out.key = key
	for {
		at := out.next
		if err := k.read(ctx, key, false, at, out); err != nil {
			return err
		}
		if out.n > 0 || out.next == at {
			return nil
		}
	}
}

// read adds to out the records of key from offset on: from the record cache
// if it holds offset, else from Kafka without waiting. A fetch of the same
// offset that runs already is waited for, up to the cluster's fetch wait
// (its session may wait for reply budget), and read from the cache. pinned
// reads only the incarnation key names (see fetchWait).
func (k *Cluster) read(ctx context.Context, key cacheKey, pinned bool, offset int64, out *reply) error {
	out.reader = k.turns.laneOf(ctx)
	k.cache.reading(key, out) // at out.next, which is offset, while it reads
	if k.cacheRead(key, offset, out) {
		return nil
	}
	done, first := k.fetching.begin(key.readerKey, offset)
	if !first {
		if !waitChange(ctx, done, k.cfg.FetchMaxWait.Duration()) {
			return k.cause(ctx, ctx.Err())
		}
		if k.cacheRead(key, offset, out) {
			return nil
		}
		return k.fetchWait(ctx, key, pinned, offset, 0, out) // it failed, is slow, or its records are gone
	}
	defer k.fetching.end(key.readerKey, offset)
	if k.cacheRead(key, offset, out) { // a fetch that ended since the first look
		return nil
	}
	return k.fetchWait(ctx, key, pinned, offset, 0, out)
}

// Fetch returns the records of topic/partition from offset on, as many as
// one fetch of the cluster's byte limit returns. The first record returned
// is the one at offset, unless offset holds no data record (compacted away,
// a control record, an aborted transaction): then it is the first data
// record after it. At the end of the log the result is empty after at most
// the cluster's fetch wait.
func (k *Cluster) Fetch(ctx context.Context, topic string, partition int32, offset int64) ([]*kgo.Record, error) {
	out := newReply(offset, DefaultMaxRecords, int(k.cfg.FetchMaxBytes))
	if err := k.readAt(ctx, topic, partition, out); err != nil || len(out.records) > 0 {
		return out.records, err
	}
	if err := k.fetchWait(ctx, cacheKey{readerKey: readerKey{topic, partition}}, false, out.next, k.cfg.FetchMaxWait.Duration(), out); err != nil {
		return nil, err
	}
	return out.records, nil
}
