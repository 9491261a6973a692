package kafka_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
	pb "github.com/envoy-pubsub/gateway/proto"
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

// benchKafka starts kfake with topic "t" holding fetchShapes and returns its
// brokers.
func benchKafka(b *testing.B) []string {
	b.Helper()
	k := testkit.Kafka(b, kfake.SeedTopics(int32(len(fetchShapes)), "t"))
	for _, s := range fetchShapes {
		recs := make([]testkit.Record, s.records)
		for i := range recs {
			recs[i].Value = strings.Repeat("v", s.valueBytes)
		}
		testkit.Produce(b, k.ListenAddrs(), "t", s.partition, recs)
	}
	return k.ListenAddrs()
}

// benchCluster returns a shared client for benchKafka's cluster.
func benchCluster(b *testing.B) *kafka.Cluster {
	b.Helper()
	doc, err := config.Parse([]byte(testkit.ClusterYAML(benchKafka(b), "", "")))
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

// BenchmarkFetchHandler is the cmd_kafka_fetch handler in a session of the
// standalone server on loopback TCP: the fetch, the reply built from it, encoded and written, and
// the pooled memory given back after the reply. The client end sends the
// request frame and reads the reply frame without decoding it.
func BenchmarkFetchHandler(b *testing.B) {
	srv := testkit.StartServer(b, testkit.ClusterYAML(benchKafka(b), "", ""), nil)
	conn, _, _, err := ws.Dial(ctx(b), srv.URL("kafka")) // the server sends nothing unasked
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	for _, s := range fetchShapes {
		b.Run(s.description, func(b *testing.B) {
			req, err := proto.Marshal(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdKafkaFetch{
				CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: "t", Partition: s.partition},
			}})
			if err != nil {
				b.Fatal(err)
			}
			frame := ws.MustCompileFrame(ws.MaskFrame(ws.NewBinaryFrame(req)))
			b.SetBytes(int64(s.records * s.valueBytes))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := conn.Write(frame); err != nil {
					b.Fatal(err)
				}
				h, err := ws.ReadHeader(conn)
				if err != nil {
					b.Fatal(err)
				}
				if h.Length < int64(s.records*s.valueBytes) {
					b.Fatalf("reply of %d bytes for %d records of %d bytes", h.Length, s.records, s.valueBytes)
				}
				if _, err := io.CopyN(io.Discard, conn, h.Length); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
