package kafka_test

import (
	"fmt"
	"testing"

	"github.com/gobwas/ws"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// BenchmarkSubscribeFanOut measures delivering one partition's records to
// many subscribed sessions; b.N is records per session. Clients only frame
// the pushes (no protobuf decoding), so the figure is the gateway's.
func BenchmarkSubscribeFanOut(b *testing.B) {
	for _, sessions := range []int{1, 100} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			k := testkit.Kafka(b, kfake.SeedTopics(1, "t"))
			srv := testkit.StartServer(b, testkit.ClusterYAML(k.ListenAddrs(), "", ""), nil)
			sub, _ := proto.Marshal(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdKafkaSubscribe{
				CmdKafkaSubscribe: &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}, Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}},
			}})
			recs := make([]testkit.Record, b.N)
			for i := range recs {
				recs[i] = testkit.Record{Value: string(make([]byte, 100))}
			}
			testkit.Produce(b, k.ListenAddrs(), "t", 0, recs)
			done := make(chan int64, sessions)
			b.ResetTimer()
			for range sessions {
				conn, br, _, err := ws.Dial(ctx(b), srv.URL("kafka"))
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				go func() {
					var rd interface{ Read([]byte) (int, error) } = conn
					if br != nil {
						rd = br
					}
					ws.WriteFrame(conn, ws.MaskFrame(ws.NewBinaryFrame(sub)))
					var bytes int64
					for bytes < int64(b.N)*100 {
						f, err := ws.ReadFrame(rd)
						if err != nil {
							break
						}
						bytes += int64(len(f.Payload))
					}
					done <- bytes
				}()
			}
			var total int64
			for range sessions {
				total += <-done
			}
			b.SetBytes(int64(sessions) * 100)
			b.ReportMetric(float64(sessions)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
