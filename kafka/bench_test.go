package kafka_test

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// fetchShapes are the partitions of the fetch benchmarks: how many records
// of which value size they hold. A fetch from offset 0 returns up to the
// 1 MiB default limit of them.
var fetchShapes = []struct {
	partition   int32
	records     int
	valueBytes  int
	description string
}{
	{0, 1, 100, "1x100B"},
	{1, 8000, 100, "8000x100B"},
	{2, 1000, 1024, "1000x1KiB"},
}

// benchCluster starts kfake with topic "t" holding fetchShapes and returns
// a shared client for it.
func benchCluster(b *testing.B) *kafka.Cluster {
	b.Helper()
	k := testkit.Kafka(b, kfake.SeedTopics(int32(len(fetchShapes)), "t"))
	for _, s := range fetchShapes {
		recs := make([]testkit.Record, s.records)
		for i := range recs {
			recs[i].Value = strings.Repeat("v", s.valueBytes)
		}
		testkit.Produce(b, k.ListenAddrs(), "t", s.partition, recs)
	}
	doc, err := config.Parse([]byte(testkit.ClusterYAML(k.ListenAddrs(), "", "")))
	if err != nil {
		b.Fatal(err)
	}
	pool := kafka.NewPool()
	b.Cleanup(pool.Close)
	cl, err := pool.Acquire(doc.KafkaClusters["kafka"])
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cl.Release)
	return cl
}

// BenchmarkClusterFetch is one Kafka fetch and the decoding of its records.
func BenchmarkClusterFetch(b *testing.B) {
	cl := benchCluster(b)
	for _, s := range fetchShapes {
		b.Run(s.description, func(b *testing.B) {
			b.SetBytes(int64(s.records * s.valueBytes))
			b.ReportAllocs()
			for b.Loop() {
				recs, err := cl.Fetch(context.Background(), "t", s.partition, 0)
				if err != nil {
					b.Fatal(err)
				}
				if len(recs) != s.records {
					b.Fatalf("%d records, want %d", len(recs), s.records)
				}
			}
		})
	}
}

// BenchmarkFetchHandler is the cmd_kafka_fetch handler: the fetch, and the
// records turned into a reply.
func BenchmarkFetchHandler(b *testing.B) {
	cl := benchCluster(b)
	mux := pubsub.NewMux()
	kafka.Register(mux, cl, nil)
	for _, s := range fetchShapes {
		b.Run(s.description, func(b *testing.B) {
			req := &pubsub.Request{Command: pubsub.CmdKafkaFetch, Msg: &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaFetch{
				CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: "t", Partition: s.partition},
			}}}
			b.SetBytes(int64(s.records * s.valueBytes))
			b.ReportAllocs()
			for b.Loop() {
				resp, err := mux.ServePubSub(context.Background(), req)
				if err != nil {
					b.Fatal(err)
				}
				if n := len(resp.GetKafkaFetchResp().GetMessages()); n != s.records {
					b.Fatalf("%d records, want %d", n, s.records)
				}
			}
		})
	}
}
