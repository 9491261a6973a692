package kafka_test

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
)

// A client polling the end of the log, at the last commit marker (where the
// APISIX fetch loop of a transactional topic stays: past the last data
// record) or at the log end, leases the partition's running shared reader
// without a metadata request: the broker's metadata requests grow with the
// time (the record cache's checks, one per CacheCheckInterval at most),
// not with the polls.
func TestPollingTheEndOfTheLogAsksNoMetadataPerFetch(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	var reqs requestCounter
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "    fetch_max_wait: 20ms\n", ""), nil,
		kafka.ClientOptions(kgo.WithHooks(&reqs)))
	transactionalLog(t, k, transactionalProducer(t, k)) // data records end at 8, the commit marker at 9
	c := srv.Dial(t, "kafka")
	if msgs, err := c.Fetch(ctx(t), "t", 0, 9); err != nil || len(msgs) != 0 {
		t.Fatalf("first poll at the end: %d records, %v", len(msgs), err)
	} // it starts the reader
	const polls = 100
	before, start := reqs.load(kmsg.Metadata), time.Now()
	for i := range polls {
		offset := int64(9 + i%2)
		if msgs, err := c.Fetch(ctx(t), "t", 0, offset); err != nil || len(msgs) != 0 {
			t.Fatalf("poll %d at %d: %d records, %v", i, offset, len(msgs), err)
		}
	}
	asked := reqs.load(kmsg.Metadata) - before
	// The cache's checks, and a few the clients make on their own.
	limit := int64(time.Since(start)/kafka.CacheCheckInterval) + 5
	if asked > limit {
		t.Fatalf("%d metadata requests for %d polls at the end of the log, want at most %d (the record cache's checks)", asked, polls, limit)
	}
	t.Logf("%d metadata requests for %d polls in %v", asked, polls, time.Since(start))
}
