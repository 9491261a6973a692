package kafka_test

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// jsonRecord is a record as web clients produce them: a JSON value, a key,
// headers and a client timestamp.
func jsonRecord(i int, ts time.Time) *pb.KafkaRecord {
	return &pb.KafkaRecord{
		Key:       []byte(fmt.Sprintf("user-%d", i%4)),
		Value:     []byte(fmt.Sprintf(`{"event":"click","n":%d,"path":"/items/%d"}`, i, i*7)),
		Headers:   []*pb.KafkaHeader{{Key: "content-type", Value: []byte("application/json")}, {Key: "n", Value: []byte(fmt.Sprint(i))}},
		Timestamp: ts.Add(time.Duration(i) * time.Millisecond).UnixMilli(),
	}
}

func TestProduceFetchRoundTrip(t *testing.T) {
	f := newFixture(t, "    produce_topics: [t]\n")
	ts := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	recs := make([]*pb.KafkaRecord, 5)
	for i := range recs {
		recs[i] = jsonRecord(i, ts)
	}
	offsets, err := f.c.Produce(ctx(t), "t", 2, recs...)
	if err != nil {
		t.Fatal(err)
	}
	if len(offsets) != len(recs) {
		t.Fatalf("got %d offsets for %d records", len(offsets), len(recs))
	}
	for i, o := range offsets {
		if o.GetPartition() != 2 || o.GetOffset() != int64(i) {
			t.Fatalf("record %d acknowledged at %v, want partition 2 offset %d", i, o, i)
		}
	}
	msgs, err := f.c.Fetch(ctx(t), "t", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != len(recs) {
		t.Fatalf("fetched %d records, want %d", len(msgs), len(recs))
	}
	for i, m := range msgs {
		want := recs[i]
		if string(m.GetKey()) != string(want.Key) || string(m.GetValue()) != string(want.Value) || m.GetTimestamp() != want.Timestamp {
			t.Errorf("record %d: got %v, want %v", i, m, want)
		}
		if len(m.GetHeaders()) != 2 || m.GetHeaders()[1].GetKey() != "n" || string(m.GetHeaders()[1].GetValue()) != fmt.Sprint(i) {
			t.Errorf("record %d headers: %v", i, m.GetHeaders())
		}
	}

	// Without a partition, a key always goes to the partition Kafka's
	// default partitioner gives it, as a franz-go producer would.
	direct, err := kgo.NewClient(kgo.SeedBrokers(f.kafka.ListenAddrs()...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	for i := range 8 {
		key := fmt.Sprintf("key-%d", i)
		got, err := f.c.Produce(ctx(t), "t", -1, &pb.KafkaRecord{Key: []byte(key), Value: []byte("by key")})
		if err != nil {
			t.Fatal(err)
		}
		res := direct.ProduceSync(ctx(t), &kgo.Record{Topic: "t", Key: []byte(key), Value: []byte("direct")})
		if err := res.FirstErr(); err != nil {
			t.Fatal(err)
		}
		if got[0].GetPartition() != res[0].Record.Partition {
			t.Errorf("key %s: gateway partition %d, franz-go partition %d", key, got[0].GetPartition(), res[0].Record.Partition)
		}
	}
	// The broker's time when the record has none.
	before := time.Now().Add(-time.Second)
	got, err := f.c.Produce(ctx(t), "t", 0, &pb.KafkaRecord{Value: []byte("now")})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err = f.c.Fetch(ctx(t), "t", 0, got[0].GetOffset())
	if err != nil || len(msgs) == 0 || time.UnixMilli(msgs[0].GetTimestamp()).Before(before) {
		t.Fatalf("record without timestamp: %v, %v", msgs, err)
	}
}

// TestProducePipelinedRequestsKeepTheirOrder writes many produce requests
// on one connection without waiting for replies: every partition holds
// their records in the order the requests were sent.
func TestProducePipelinedRequestsKeepTheirOrder(t *testing.T) {
	f := newFixture(t, "    produce_topics: [t]\n")
	conn, br, _, err := ws.Dial(ctx(t), f.srv.URL("kafka"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const requests, perRequest = 60, 5
	replies := make(chan error, 1)
	go func() {
		var rd io.Reader = conn
		if br != nil {
			rd = io.MultiReader(br, conn)
		}
		rd = bufio.NewReader(rd)
		for range requests {
			data, err := wsutil.ReadServerBinary(struct {
				io.Reader
				io.Writer
			}{rd, io.Discard})
			if err != nil {
				replies <- err
				return
			}
			resp := &pb.PubSubResp{}
			if err := proto.Unmarshal(data, resp); err != nil {
				replies <- err
				return
			}
			if e := resp.GetErrorResp(); e != nil {
				replies <- fmt.Errorf("request %d: %s", resp.GetSequence(), e.GetMessage())
				return
			}
		}
		replies <- nil
	}()
	for i := range requests {
		recs := make([]*pb.KafkaRecord, perRequest)
		for j := range recs {
			recs[j] = &pb.KafkaRecord{Key: []byte(fmt.Sprint(j)), Value: []byte(fmt.Sprintf("%03d-%d", i, j))}
		}
		partition := int32(i%4) - 1 // -1 (by key), 0, 1, 2
		data, err := proto.Marshal(&pb.PubSubReq{Sequence: int64(i + 1), Req: &pb.PubSubReq_CmdKafkaProduce{
			CmdKafkaProduce: &pb.CmdKafkaProduce{Topic: "t", Partition: partition, Records: recs},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := wsutil.WriteClientBinary(conn, data); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-replies:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx(t).Done():
		t.Fatal("replies did not come")
	}
	total := 0
	for p := range int32(3) {
		var values []string
		for off := int64(0); ; {
			msgs, err := f.c.Fetch(ctx(t), "t", p, off)
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) == 0 {
				break
			}
			for _, m := range msgs {
				values = append(values, string(m.GetValue()))
			}
			off = msgs[len(msgs)-1].GetOffset() + 1
		}
		for i := 1; i < len(values); i++ {
			if values[i] < values[i-1] {
				t.Fatalf("partition %d: %s after %s", p, values[i], values[i-1])
			}
		}
		total += len(values)
	}
	if total != requests*perRequest {
		t.Fatalf("%d records in the topic, want %d", total, requests*perRequest)
	}
}

func TestProduceRefusals(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(2, "t", "events-a"))
	for _, tc := range []struct {
		name, cluster, topExtra string
		topic                   string
		partition               int32
		records                 int
		want                    string
	}{
		{"no allow-list", "", "", "t", 0, 1, "failed to produce message, topic: t, partition: 0, err: topic not allowed"},
		{"empty allow-list", "    produce_topics: []\n", "", "t", 0, 1, "failed to produce message, topic: t, partition: 0, err: topic not allowed"},
		{"outside the allow-list", "    produce_topics: ['events-*']\n", "", "t", 1, 1, "failed to produce message, topic: t, partition: 1, err: topic not allowed"},
		{"readable is not writable", "    topics: ['events-*']\n    produce_topics: [t]\n", "", "events-a", 0, 1, "failed to produce message, topic: events-a, partition: 0, err: topic not allowed"},
		{"too many records", "    produce_topics: ['events-*']\n", "session: {max_produce_records: 2}\n", "events-a", 0, 3, "failed to produce message, topic: events-a, partition: 0, err: 3 records, more than the limit of 2 per request"},
		{"no records", "    produce_topics: ['events-*']\n", "", "events-a", 0, 0, "failed to produce message, topic: events-a, partition: 0, err: no records"},
		{"missing partition", "    produce_topics: ['events-*']\n", "", "events-a", 2, 1, "failed to produce message, topic: events-a, partition: 2, err: not found partition"},
		{"bad partition", "    produce_topics: ['events-*']\n", "", "events-a", -2, 1, "failed to produce message, topic: events-a, partition: -2, err: invalid partition: want -1 (by key) or a partition of the topic"},
		{"missing topic", "    produce_topics: ['events-*']\n", "", "events-b", 0, 1, "failed to produce message, topic: events-b, partition: 0, err: not found topic"},
	} {
		c := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), tc.cluster, tc.topExtra), nil).Dial(t, "kafka")
		recs := make([]*pb.KafkaRecord, tc.records)
		for i := range recs {
			recs[i] = &pb.KafkaRecord{Value: []byte("v")}
		}
		_, err := c.Produce(ctx(t), tc.topic, tc.partition, recs...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
	// Nothing was written.
	for _, topic := range []string{"t", "events-a"} {
		for p := range int32(2) {
			if msgs, err := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "", ""), nil).Dial(t, "kafka").Fetch(ctx(t), topic, p, 0); err != nil || len(msgs) != 0 {
				t.Errorf("%s/%d holds %d records (%v)", topic, p, len(msgs), err)
			}
		}
	}
}

// TestProduceBytesPerSecond checks that a session producing faster than its
// byte rate is slowed to it.
func TestProduceBytesPerSecond(t *testing.T) {
	f := newFixture(t, "    produce_topics: [t]\n")
	c := testkit.StartServer(t, testkit.ClusterYAML(f.kafka.ListenAddrs(), "    produce_topics: [t]\n", "session: {produce_bytes_per_second: 10000}\n"), nil).Dial(t, "kafka")
	value := []byte(strings.Repeat("x", 2500))
	start := time.Now()
	// 5 requests of 2500 bytes at 10000 bytes/s: the last starts at 1s.
	for range 5 {
		if _, err := c.Produce(ctx(t), "t", 0, &pb.KafkaRecord{Value: value}); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("5 x 2500 bytes at 10000 bytes/s took %v, want about 1s", d)
	}
}

// TestProduceWithBrokersDownFails checks that a produce to brokers that went
// away answers "request timed out" after the request timeout and leaves the
// session usable.
func TestProduceWithBrokersDownFails(t *testing.T) {
	f := newFixture(t, "    produce_topics: [t]\n    request_timeout: 1s\n")
	if _, err := f.c.Produce(ctx(t), "t", 0, &pb.KafkaRecord{Value: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	f.kafka.Close()
	_, err := f.c.Produce(ctx(t), "t", 0, &pb.KafkaRecord{Value: []byte("after")})
	msg := serverError(t, err)
	if msg != "failed to produce message, topic: t, partition: 0, err: request timed out" {
		t.Fatalf("got %q", msg)
	}
	if _, err := f.c.Ping(ctx(t), []byte("ok")); err != nil {
		t.Fatalf("session unusable with brokers down: %v", err)
	}
}
