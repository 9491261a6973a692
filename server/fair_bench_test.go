package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/envoy-pubsub/gateway/internal/testkit"
)

// BenchmarkNeighbourOfNeverReadingClients measures the fetch rate of a
// normal client reading one topic (JSON values of ~150 bytes, produced
// snappy-compressed with the franz-go producer's defaults) alone, and beside
// clients of the same cluster that pipeline hundreds of fetches of 512 KiB
// records of another topic and never read. The ratio of the two records/s
// figures is the share a never-reading client leaves its neighbour:
//
//	go test -run '^$' -bench NeighbourOfNeverReading ./server/
func BenchmarkNeighbourOfNeverReadingClients(b *testing.B) {
	const records = 20000
	k := testkit.Kafka(b, kfake.SeedTopics(1, topic, bigTopic))
	produceBig(b, k)
	recs := make([]testkit.Record, records)
	for i := range recs {
		recs[i] = testkit.Record{Key: fmt.Sprintf("user-%d", i%977), Value: fmt.Sprintf(
			`{"event":"page_view","user":"user-%d","path":"/items/%d","ts":%d,"ua":"Mozilla/5.0","ok":true}`, i%977, i, 1700000000000+i)}
	}
	testkit.Produce(b, k.ListenAddrs(), topic, 0, recs)
	for _, slow := range []int{0, 1, 4} {
		b.Run(fmt.Sprintf("never-reading=%d", slow), func(b *testing.B) {
			s := testkit.StartServer(b, testkit.ClusterYAML(k.ListenAddrs(), "", "session: {write_timeout: 10m}\n"), nil)
			for range slow {
				neverReading(b, s.URL("kafka"), slowFetches)
			}
			c := s.Dial(b, "kafka")
			deadline := time.Now().Add(10 * time.Second)
			for s.Server.ReplyBytes() < slow*(3<<20) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond) // the slow sessions fill most of their budgets
			}
			read := 0
			b.ResetTimer()
			for range b.N {
				for next := int64(0); next < records; {
					msgs, err := c.Fetch(ctxFor(b), topic, 0, next)
					if err != nil {
						b.Fatal(err)
					}
					next = msgs[len(msgs)-1].GetOffset() + 1
					read += len(msgs)
				}
			}
			b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
