package kafka_test

import (
	"runtime"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
)

// failFetches makes the brokers answer every fetch of topic with code.
func failFetches(k *kfake.Cluster, code int16) {
	k.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		r := req.(*kmsg.FetchRequest)
		resp := r.ResponseKind().(*kmsg.FetchResponse)
		resp.SetVersion(r.GetVersion())
		for _, t := range r.Topics {
			rt := kmsg.NewFetchResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, p := range t.Partitions {
				rp := kmsg.NewFetchResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rp.HighWatermark, rp.LastStableOffset, rp.LogStartOffset = -1, -1, -1
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
}

// TestConsumerErrorsReachSubscribersAtTheEnd: subscribers waiting at the end
// of the log hear of an error of the shared reader's consumer (here the
// topic's read permission was taken away), as fetches do.
func TestConsumerErrorsReachSubscribersAtTheEnd(t *testing.T) {
	f := newFixture(t, "")
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, valued("v", 3))
	first := subscribeOne(t, f.c, latest())
	second := subscribeOne(t, f.srv.Dial(t, "kafka"), latest())
	expectQuiet(t, first)

	failFetches(f.kafka, kerr.TopicAuthorizationFailed.Code)
	const want = "failed to subscribe, topic: t, partition: 0, err: TOPIC_AUTHORIZATION_FAILED"
	for _, sub := range []*client.Subscription{first, second} {
		if msg := subscriptionError(t, sub); msg != want {
			t.Fatalf("subscriber at the end got %q, want %q", msg, want)
		}
	}
	_, err := f.c.Fetch(ctx(t), "t", 0, 3)
	if msg := serverError(t, err); msg != "failed to fetch message, topic: t, partition: 0, err: TOPIC_AUTHORIZATION_FAILED" {
		t.Fatalf("fetch got %q", msg)
	}
}

// TestABatchOverTheDecodeBoundIsRefused: a compressed batch that would
// decompress beyond the pool's MaxBatchBytes (default and small) is refused
// with a clear cause, to a fetch and to subscribers waiting at the end, and
// refusing it allocates about the bound, not what the batch expands to.
func TestABatchOverTheDecodeBoundIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []kafka.PoolOption
		bound  int
		expand int
	}{
		{"default bound", nil, kafka.DefaultMaxBatchBytes, kafka.DefaultMaxBatchBytes + 4<<20},
		{"small bound", []kafka.PoolOption{kafka.MaxBatchBytes(256 << 10)}, 256 << 10, 32 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := testkit.Kafka(t, kfake.SeedTopics(1, "t"), kfake.BrokerConfigs(map[string]string{"message.max.bytes": "67108864"}))
			srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "", ""), nil, tc.opts...)
			c := srv.Dial(t, "kafka")
			testkit.Produce(t, k.ListenAddrs(), "t", 0, valued("small", 2), kgo.ProducerBatchCompression(kgo.ZstdCompression()))
			if msgs, err := c.Fetch(ctx(t), "t", 0, 0); err != nil || len(msgs) != 2 {
				t.Fatalf("a batch within the bound: %d records, %v", len(msgs), err)
			}
			waiting := subscribeOne(t, srv.Dial(t, "kafka"), latest())

			// Zeros: a few KiB once compressed.
			testkit.Produce(t, k.ListenAddrs(), "t", 0, []testkit.Record{{Value: string(make([]byte, tc.expand))}},
				kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerBatchMaxBytes(64<<20))

			const want = "err: record batch too large"
			if msg := subscriptionError(t, waiting); !strings.HasSuffix(msg, want) {
				t.Fatalf("the subscriber at the end got %q, want the cause %q", msg, want)
			}
			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := c.Fetch(ctx(t), "t", 0, 2)
			runtime.ReadMemStats(&after)
			if msg := serverError(t, err); !strings.HasSuffix(msg, want) {
				t.Fatalf("fetch of the batch got %q, want the cause %q", msg, want)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > uint64(2*tc.bound+4<<20) {
				t.Fatalf("refusing the batch allocated %d bytes; the bound is %d", n, tc.bound)
			}
		})
	}
}
