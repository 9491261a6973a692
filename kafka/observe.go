package kafka

import (
	"context"

	"github.com/envoy-pubsub/gateway/metrics"
)

// Metrics sets the sink of the pool's events: record cache lookups,
// records delivered, consumer lag, produce and fetch latencies. Default
// metrics.Nop.
func Metrics(m metrics.Kafka) PoolOption {
	return func(p *Pool) { p.metrics = m }
}

// cacheRead is recordCache.read, counted as a hit or a miss.
func (k *Cluster) cacheRead(key cacheKey, offset int64, out *reply) bool {
	hit := k.cache.read(key, offset, out)
	k.pool.metrics.CacheLookup(hit)
	return hit
}

// sent counts n records sent to the session of tally (whose partitions
// were touched when its command started).
func (k *Cluster) sent(tally *metrics.Tally, n int) {
	k.pool.metrics.Delivered(n)
	tally.Sent(n)
}

// lagged reports the records of a subscribed partition between next (the
// offset after the last one sent) and the end of its log.
func (k *Cluster) lagged(end, next int64) {
	k.pool.metrics.ConsumerLag(max(end-next, 0))
}

// tallyOf returns the Tally of the session of ctx (nil without one).
func tallyOf(ctx context.Context) *metrics.Tally { return metrics.TallyFrom(ctx) }

// CachedBytes returns the bytes the record caches of all the pool's
// clients hold (see Cluster.CachedBytes).
func (p *Pool) CachedBytes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, k := range p.clients {
		n += k.CachedBytes()
	}
	return n
}
