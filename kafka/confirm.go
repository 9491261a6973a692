package kafka

import (
	"context"
	"errors"
	"sync"
	"time"
)

// CacheCheckInterval bounds how stale the record cache may be: before it
// answers a read, a check that began at most this long ago must have
// confirmed that its records of the partition are still what Kafka holds
// (the topic's current incarnation, whose records are the only ones read;
// the leader epoch they were cached at; the log start did not move past
// them through DeleteRecords or retention). Every session reading a
// partition shares one check, so a partition costs at most two small
// requests per interval however many sessions read it.
const CacheCheckInterval = 100 * time.Millisecond

// cacheChecks shares the checks of the record cache between the sessions
// that read the same partition.
type cacheChecks struct {
	mu   sync.Mutex
	last map[readerKey]*cacheCheck
}

// cacheCheck is one check of a partition's cached records.
type cacheCheck struct {
	started time.Time
	done    chan struct{} // closed when topicID and err are set
	topicID [16]byte      // the incarnation of the topic the check found
	err     error
}

// join returns the check of key that began within CacheCheckInterval of
// now and did not fail, or a new one that the caller must run (own).
func (cc *cacheChecks) join(key readerKey, now time.Time) (c *cacheCheck, own bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if c := cc.last[key]; c != nil && now.Sub(c.started) <= CacheCheckInterval {
		select {
		case <-c.done:
			if c.err == nil {
				return c, false
			}
		default:
			return c, false // in flight
		}
	}
	c = &cacheCheck{started: now, done: make(chan struct{})}
	if cc.last == nil {
		cc.last = make(map[readerKey]*cacheCheck)
	}
	cc.last[key] = c
	return c, true
}

// forget drops the check of key if it is c, so that the map does not keep
// partitions nobody reads any more.
func (cc *cacheChecks) forget(key readerKey, c *cacheCheck) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.last[key] == c {
		delete(cc.last, key)
	}
}

// confirmCached makes sure, before the record cache answers a read of key,
// that its records are still what Kafka holds (see CacheCheckInterval), and
// returns the topic's current incarnation: only its records may be read. A
// check shared with another session that failed (its session may have
// ended) is not taken for this one's answer: it checks on its own. The
// check is work of no session: it waits in the cluster's shared lane, not
// behind the broker requests queued by the session that happens to run it.
func (k *Cluster) confirmCached(ctx context.Context, key readerKey) ([16]byte, error) {
	c, own := k.checks.join(key, time.Now())
	if own {
		c.topicID, c.err = k.checkCached(k.turns.withSharedLane(ctx), key)
		close(c.done)
		if c.err != nil {
			k.checks.forget(key, c)
		} else {
			time.AfterFunc(2*CacheCheckInterval, func() {
				defer k.pool.recoverPanic("forgetting a cache check")
				k.checks.forget(key, c)
			})
		}
		return c.topicID, c.err
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		return [16]byte{}, k.cause(ctx, ctx.Err())
	}
	if c.err != nil {
		return k.checkCached(k.turns.withSharedLane(ctx), key)
	}
	return c.topicID, nil
}

// checkCached asks Kafka whether the cached records of key are still what it
// holds: which incarnation of the topic is current (fresh metadata; a topic
// deleted and created again has a new id), at which leader epoch, and where
// the log starts. Records Kafka no longer holds are dropped, so that the
// read asks Kafka. It costs two small requests at once, no fetch and no
// decoding.
func (k *Cluster) checkCached(ctx context.Context, key readerKey) ([16]byte, error) {
	type answer struct {
		info partitionInfo
		err  error
	}
	fresh := make(chan answer, 1)
	go func() {
		a := answer{err: errors.New("internal error")}
		defer func() { fresh <- a }()
		defer k.pool.recoverPanic("looking up metadata")
		a.info, a.err = k.lookup(ctx, key.topic, key.partition, true)
	}()
	start, err := k.ListOffset(ctx, key.topic, key.partition, -2)
	a := <-fresh
	if a.err != nil {
		return [16]byte{}, a.err
	}
	if err != nil {
		return [16]byte{}, err
	}
	k.cache.confirm(cacheKey{key, a.info.topicID}, a.info.leaderEpoch, start)
	return a.info.topicID, nil
}
