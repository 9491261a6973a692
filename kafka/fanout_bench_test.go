package kafka_test

import (
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/internal/wstest"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// BenchmarkSubscribeFanOut measures delivering one partition's records to
// many subscribed sessions; b.N is records per session. Clients only frame
// the pushes (no protobuf decoding), so the figure is mostly the gateway's;
// cpu-ns/record is the CPU time of the whole test process (gateway, clients
// and kfake) per delivered record.
func BenchmarkSubscribeFanOut(b *testing.B) {
	for _, sessions := range []int{1, 100, 1000} {
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
			cpu := processCPU()
			for range sessions {
				rd := subscribeRaw(b, srv.URL("kafka"), sub)
				go func() {
					var bytes int64
					for bytes < int64(b.N)*100 {
						f, err := wstest.ReadFrame(rd, 4<<20)
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
			b.ReportMetric(float64(processCPU()-cpu)/(float64(sessions)*float64(b.N)), "cpu-ns/record")
			b.SetBytes(int64(sessions) * 100)
			b.ReportMetric(float64(sessions)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// subscribeRaw opens a session on url, closed with the benchmark, and sends
// it sub, an encoded subscribe request; it returns what reads the session's
// frames.
func subscribeRaw(b *testing.B, url string, sub []byte) io.Reader {
	conn, br, _, err := ws.Dial(ctx(b), url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	if err := ws.WriteFrame(conn, ws.MaskFrame(ws.NewBinaryFrame(sub))); err != nil {
		b.Fatal(err)
	}
	if br != nil {
		return br
	}
	return conn
}

// processCPU returns the CPU time the process has used, user and system.
func processCPU() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// BenchmarkSubscribeFanOutLive measures delivering records produced while
// many sessions are subscribed to their partition (the shared reader's
// window serves them all); b.N is records per session, JSON values of a
// fixed size. Clients only frame the pushes (no protobuf decoding), so
// cpu-ns/record, the CPU time of the whole test process (gateway, clients
// and kfake) per delivered record, is mostly the gateway's.
func BenchmarkSubscribeFanOutLive(b *testing.B) {
	for _, sessions := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("sessions=%d", sessions), func(b *testing.B) {
			k := testkit.Kafka(b, kfake.SeedTopics(1, "t"))
			srv := testkit.StartServer(b, testkit.ClusterYAML(k.ListenAddrs(), "", ""), nil)
			sub, _ := proto.Marshal(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdKafkaSubscribe{
				CmdKafkaSubscribe: &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}},
			}})
			value := func(i int) string {
				return fmt.Sprintf(`{"event":"click","user":%03d,"ok":true,"pad":"%060d"}`, i%997, i)
			}
			want := int64(b.N) * int64(len(value(0)))
			subscribed := make(chan struct{}, sessions)
			done := make(chan bool, sessions)
			for range sessions {
				rd := subscribeRaw(b, srv.URL("kafka"), sub)
				go func() {
					if _, err := skipFrame(rd); err != nil { // the acknowledgement
						done <- false
						return
					}
					subscribed <- struct{}{}
					var bytes int64
					for bytes < want {
						n, err := skipFrame(rd)
						if err != nil {
							break
						}
						bytes += n
					}
					done <- bytes >= want
				}()
			}
			for range sessions {
				<-subscribed
			}
			recs := make([]testkit.Record, b.N)
			for i := range recs {
				recs[i] = testkit.Record{Value: value(i)}
			}
			b.ResetTimer()
			cpu := processCPU()
			testkit.Produce(b, k.ListenAddrs(), "t", 0, recs)
			for range sessions {
				if !<-done {
					b.Fatal("a session ended before it had every record")
				}
			}
			delivered := sessions * b.N
			b.ReportMetric(float64(processCPU()-cpu)/float64(delivered), "cpu-ns/record")
			b.ReportMetric(float64(delivered)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// skipFrame reads one frame, discarding its payload, and returns the
// payload's length.
func skipFrame(rd io.Reader) (int64, error) {
	h, err := ws.ReadHeader(rd)
	if err != nil {
		return 0, err
	}
	return io.CopyN(io.Discard, rd, h.Length)
}
