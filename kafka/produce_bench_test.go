package kafka_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// produceWorkers is how many requests are in flight at once in the produce
// benchmarks: one per session through the gateway, one per goroutine
// against franz-go directly.
const produceWorkers = 8

// BenchmarkProduce compares producing through the gateway (a session per
// worker, cmd_kafka_produce on loopback) with producing with franz-go
// directly (one client, ProduceSync per worker), both acks=all, idempotent,
// no linger, against kfake in this process. One op is one request of
// "records" JSON records of about 100 bytes; it reports records/s and the
// 50th and 99th percentile of a request's acknowledgement latency.
func BenchmarkProduce(b *testing.B) {
	k := testkit.Kafka(b, kfake.SeedTopics(6, "bench"))
	srv := testkit.StartServer(b, testkit.ClusterYAML(k.ListenAddrs(), "    produce_topics: [bench]\n", "session: {max_produce_records: 1000}\n"), nil)
	direct, err := kgo.NewClient(kgo.SeedBrokers(k.ListenAddrs()...), kgo.ProducerLinger(0), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(direct.Close)
	for _, records := range []int{1, 100} {
		value := []byte(`{"event":"click","user":"u-0042","path":"/items/12345","ts":1767225600000,"n":0}`)
		b.Run(fmt.Sprintf("gateway/records=%d", records), func(b *testing.B) {
			clients := make([]*client.Client, produceWorkers)
			for i := range clients {
				clients[i] = srv.Dial(b, "kafka")
			}
			recs := make([]*pb.KafkaRecord, records)
			for i := range recs {
				recs[i] = &pb.KafkaRecord{Key: []byte(fmt.Sprint(i)), Value: value}
			}
			runProduceWorkers(b, records, func(ctx context.Context, worker int) error {
				_, err := clients[worker].Produce(ctx, "bench", -1, recs...)
				return err
			})
		})
		b.Run(fmt.Sprintf("franz-go/records=%d", records), func(b *testing.B) {
			runProduceWorkers(b, records, func(ctx context.Context, _ int) error {
				krs := make([]*kgo.Record, records)
				for i := range krs {
					krs[i] = &kgo.Record{Topic: "bench", Key: []byte(fmt.Sprint(i)), Value: value}
				}
				return direct.ProduceSync(ctx, krs...).FirstErr()
			})
		})
	}
}

// runProduceWorkers runs b.N produce requests over produceWorkers workers
// and reports throughput and acknowledgement latency.
func runProduceWorkers(b *testing.B, records int, produce func(ctx context.Context, worker int) error) {
	ctx := context.Background()
	var (
		next      atomic.Int64
		wg        sync.WaitGroup
		mu        sync.Mutex
		latencies []time.Duration
		firstErr  error
	)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for w := range produceWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := produce(ctx, w); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	slices.Sort(latencies)
	percentile := func(p float64) float64 {
		return float64(latencies[int(float64(len(latencies)-1)*p)].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N*records)/elapsed.Seconds(), "records/s")
	b.ReportMetric(percentile(0.50), "p50-ack-ms")
	b.ReportMetric(percentile(0.99), "p99-ack-ms")
}
