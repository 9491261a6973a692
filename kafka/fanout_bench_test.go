package kafka_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
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
	s := dialRaw(b, url)
	s.send(b, sub)
	return s.rd
}

// rawSession is a session with no client above its frames.
type rawSession struct {
	conn net.Conn
	rd   io.Reader // reads the session's frames
}

// dialRaw opens a session on url, closed with the benchmark.
func dialRaw(b *testing.B, url string) rawSession {
	conn, br, _, err := ws.Dial(ctx(b), url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	if br != nil {
		return rawSession{conn, br}
	}
	return rawSession{conn, conn}
}

// send writes req, an encoded request, to the session.
func (s rawSession) send(b *testing.B, req []byte) {
	if err := ws.WriteFrame(s.conn, ws.MaskFrame(ws.NewBinaryFrame(req))); err != nil {
		b.Fatal(err)
	}
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

// BenchmarkSubscribeFanOutScoped measures 1000 sessions, each scoped to the
// records of one of 10 tenants, against 1000 sessions that see every
// record, on one server, in three rounds that take turns (the machine's
// other load falls on both alike); b.N is the records each session is
// delivered in both, so the scoped partition holds ten times as many (the
// tenants' records in turn). In each round the records are written and the
// sessions connected first; the clock runs from the subscribe requests
// (earliest) until every session has its last record. The gateway reads a
// partition once for all its sessions and decodes it once; a scoped round
// also filters each push once per tenant and encodes it once per tenant.
// cpu-ns/delivery is the CPU time of the whole process (gateway, clients
// that only frame the pushes, kfake) per delivered record; scoped/unscoped
// is the ratio of deliveries/s.
func BenchmarkSubscribeFanOutScoped(b *testing.B) {
	const sessions, tenants, rounds = 1000, 10, 3
	var topics []string
	for r := range rounds {
		topics = append(topics, fmt.Sprintf("all%d", r), fmt.Sprintf("scoped%d", r))
	}
	k := testkit.Kafka(b, kfake.SeedTopics(1, topics...))
	srv := startScopedServer(b, k.ListenAddrs(), "")
	b.ResetTimer()
	var all, scoped fanOutTotals
	for r := range rounds {
		all.add(fanOutOnce(b, k, srv, topics[2*r], sessions, 1, false))
		scoped.add(fanOutOnce(b, k, srv, topics[2*r+1], sessions, tenants, true))
	}
	b.ReportMetric(all.perSecond(), "unscoped-deliveries/s")
	b.ReportMetric(scoped.perSecond(), "scoped-deliveries/s")
	b.ReportMetric(scoped.perSecond()/all.perSecond(), "scoped/unscoped")
	b.ReportMetric(all.cpuPerDelivery(), "unscoped-cpu-ns/delivery")
	b.ReportMetric(scoped.cpuPerDelivery(), "scoped-cpu-ns/delivery")
}

// fanOutTotals adds up the rounds of one kind of fan-out.
type fanOutTotals struct {
	delivered float64
	elapsed   time.Duration
	cpu       time.Duration
}

func (t *fanOutTotals) add(delivered float64, elapsed, cpu time.Duration) {
	t.delivered += delivered
	t.elapsed += elapsed
	t.cpu += cpu
}

func (t *fanOutTotals) perSecond() float64 { return t.delivered / t.elapsed.Seconds() }

func (t *fanOutTotals) cpuPerDelivery() float64 { return float64(t.cpu) / t.delivered }

// fanOutOnce writes b.N JSON records per tenant to topic, the tenants in
// turn, each tenant's last record followed by an end marker; connects
// sessions (session i scoped to tenant i%tenants when scoped); then
// subscribes them all from the earliest offset and waits until each has
// its marker. It returns the records delivered (not counting markers), the
// time that took and the process CPU time used meanwhile.
func fanOutOnce(b *testing.B, k *kfake.Cluster, srv *scopedServer, topic string, sessions, tenants int, scoped bool) (delivered float64, elapsed, cpu time.Duration) {
	b.StopTimer()
	const marker = "end-of-the-fan-out"
	recs := make([]testkit.Record, 0, (b.N+1)*tenants)
	for i := range b.N * tenants {
		recs = append(recs, tenantRecord(fmt.Sprint(i%tenants), "", fmt.Sprintf(`{"event":"click","user":%03d,"ok":true,"pad":"%060d"}`, i%997, i)))
	}
	for t := range tenants {
		recs = append(recs, tenantRecord(fmt.Sprint(t), "", marker))
	}
	testkit.Produce(b, k.ListenAddrs(), topic, 0, recs)
	sub, _ := proto.Marshal(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdKafkaSubscribe{
		CmdKafkaSubscribe: &pb.CmdKafkaSubscribe{Topic: topic, Partitions: []int32{0}, Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}},
	}})
	conns := make([]rawSession, sessions)
	for i := range conns {
		path := "kafka"
		if scoped {
			path = fmt.Sprintf("kafka?tenant=%d", i%tenants)
		}
		conns[i] = dialRaw(b, "ws://"+srv.addr+"/"+path)
	}
	done := make(chan bool, sessions)
	b.StartTimer()
	began, cpuBefore := time.Now(), processCPU()
	for _, s := range conns {
		s.send(b, sub)
		go func() { done <- readUntil(s.rd, []byte(marker)) }()
	}
	for range sessions {
		if !<-done {
			b.Fatal("a session ended before its last record")
		}
	}
	elapsed, cpu = time.Since(began), processCPU()-cpuBefore
	b.StopTimer()
	for _, s := range conns {
		s.conn.Close()
	}
	return float64(sessions) * float64(b.N), elapsed, cpu
}

// readUntil reads frames until one ends in a record with value marker (the
// last message of a push ends a few fields before the end of its frame);
// it reports whether it found one.
func readUntil(rd io.Reader, marker []byte) bool {
	var buf []byte
	for {
		h, err := ws.ReadHeader(rd)
		if err != nil {
			return false
		}
		if int64(cap(buf)) < h.Length {
			buf = make([]byte, h.Length)
		}
		frame := buf[:h.Length]
		if _, err := io.ReadFull(rd, frame); err != nil {
			return false
		}
		if bytes.Contains(frame[max(0, len(frame)-256):], marker) {
			return true
		}
	}
}

// BenchmarkSubscribePushOneRecord measures the push path at one record per
// push: 100 sessions subscribed to the end of one partition, and records
// produced one at a time, each after every session read the one before;
// b.N is records. cpu-ns/delivery is the CPU time of the whole process
// (gateway, the 100 clients that only frame the pushes, the producer and
// kfake) per delivered record; p50-us and p99-us are the times from the
// produce call to a session's read of the record, over every session.
func BenchmarkSubscribePushOneRecord(b *testing.B) {
	const sessions = 100
	k := testkit.Kafka(b, kfake.SeedTopics(1, "t"))
	srv := testkit.StartServer(b, testkit.ClusterYAML(k.ListenAddrs(), "", ""), nil)
	sub, _ := proto.Marshal(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdKafkaSubscribe{
		CmdKafkaSubscribe: &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}},
	}})
	producer, err := kgo.NewClient(kgo.SeedBrokers(k.ListenAddrs()...), kgo.DefaultProduceTopic("t"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		b.Fatal(err)
	}
	defer producer.Close()
	var sentAt atomic.Int64 // when the record being read was produced
	read := make(chan time.Duration, sessions)
	for range sessions {
		rd := subscribeRaw(b, srv.URL("kafka"), sub)
		if _, err := skipFrame(rd); err != nil { // the acknowledgement
			b.Fatal(err)
		}
		go func() {
			for {
				if _, err := skipFrame(rd); err != nil {
					return
				}
				read <- time.Duration(time.Now().UnixNano() - sentAt.Load())
			}
		}()
	}
	value := []byte(`{"event":"click","user":123,"ok":true,"pad":"000000000000000000000000000000000000000000000000000000000000"}`)
	produce := func() {
		sentAt.Store(time.Now().UnixNano())
		if err := producer.ProduceSync(ctx(b), &kgo.Record{Value: value}).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	// A first record starts the shared reader's stream.
	produce()
	for range sessions {
		<-read
	}
	lat := make([]time.Duration, 0, b.N*sessions)
	b.ResetTimer()
	cpu := processCPU()
	for range b.N {
		produce()
		for range sessions {
			lat = append(lat, <-read)
		}
	}
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N*sessions), "cpu-ns/delivery")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
}
