package kafka_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/testkit"
)

// TestARecordOverThePendingBoundGoesThrough: one record larger than the
// session's max_pending_bytes is delivered at once, alone, at a small bound
// and at the default one, where it used to wait for request_timeout: the
// request's own reservation for the broker fetch counted as held.
func TestARecordOverThePendingBoundGoesThrough(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cluster string
		session string
		size    int
	}{
		{"small bound", "    fetch_max_bytes: 65536\n", "session: {max_pending_bytes: 65536}\n", 150 << 10},
		{"default bound", "", "", config.DefaultMaxPendingBytes + 512<<10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := testkit.Kafka(t, kfake.SeedTopics(1, "t"), kfake.BrokerConfigs(map[string]string{"message.max.bytes": fmt.Sprint(16 << 20)}))
			srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "    request_timeout: 5s\n"+tc.cluster, tc.session), nil)
			big := bytes.Repeat([]byte{'x'}, tc.size)
			testkit.Produce(t, k.ListenAddrs(), "t", 0, []testkit.Record{{Value: string(big)}, {Value: "after"}},
				kgo.ProducerBatchMaxBytes(16<<20), kgo.ProducerBatchCompression(kgo.NoCompression()))
			c := srv.Dial(t, "kafka")
			start := time.Now()
			msgs, err := c.Fetch(ctx(t), "t", 0, 0)
			if err != nil {
				t.Fatalf("fetch of a %d-byte record: %v", tc.size, err)
			}
			if d := time.Since(start); d > 4*time.Second {
				t.Fatalf("the fetch took %v, as long as request_timeout", d)
			}
			if len(msgs) == 0 || !bytes.Equal(msgs[0].GetValue(), big) {
				t.Fatalf("got %d records, want the large one first", len(msgs))
			}
			msgs, err = c.Fetch(ctx(t), "t", 0, 1)
			if err != nil || len(msgs) != 1 || string(msgs[0].GetValue()) != "after" {
				t.Fatalf("fetch after it: %d records, %v", len(msgs), err)
			}
		})
	}
}
