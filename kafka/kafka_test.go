package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// fixture is a kfake cluster with topic "t" (3 partitions) behind a server.
type fixture struct {
	kafka *kfake.Cluster
	srv   *testkit.Server
	c     *client.Client
}

func newFixture(t *testing.T, clusterExtra string, opts ...kfake.Opt) *fixture {
	t.Helper()
	k := testkit.Kafka(t, append([]kfake.Opt{kfake.SeedTopics(3, "t")}, opts...)...)
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), clusterExtra, ""), nil)
	return &fixture{kafka: k, srv: srv, c: srv.Dial(t, "kafka")}
}

func serverError(t *testing.T, err error) string {
	t.Helper()
	var se *client.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want an error_resp", err)
	}
	if se.Code != 0 {
		t.Fatalf("error code %d, want 0", se.Code)
	}
	return se.Message
}

func TestListOffset(t *testing.T) {
	f := newFixture(t, "")
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 1, testkit.SecondApart(10, base))

	for _, tc := range []struct {
		name      string
		timestamp int64
		want      int64
	}{
		{"earliest", -2, 0},
		{"latest", -1, 10},
		{"exact timestamp", base.Add(4 * time.Second).UnixMilli(), 4},
		{"between records", base.Add(4*time.Second + 500*time.Millisecond).UnixMilli(), 5},
		{"before every record", base.Add(-time.Hour).UnixMilli(), 0},
		{"after every record", base.Add(time.Hour).UnixMilli(), -1},
	} {
		got, err := f.c.ListOffset(ctx(t), "t", 1, tc.timestamp)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	if got, err := f.c.ListOffset(ctx(t), "t", 0, -1); err != nil || got != 0 {
		t.Errorf("latest of empty partition: got %d, %v; want 0", got, err)
	}
}

func TestFetchFromStartAndFromOffset(t *testing.T) {
	f := newFixture(t, "")
	ts := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	recs := testkit.Numbered(5)
	for i := range recs {
		recs[i].Timestamp = ts
	}
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 2, recs)

	msgs, err := f.c.Fetch(ctx(t), "t", 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 5 {
		t.Fatalf("got %d records, want 5", len(msgs))
	}
	for i, m := range msgs {
		if m.GetOffset() != int64(i) || string(m.GetKey()) != fmt.Sprintf("k%d", i) ||
			string(m.GetValue()) != fmt.Sprintf("v%d", i) || m.GetTimestamp() != ts.UnixMilli() {
			t.Fatalf("record %d: got %v", i, m)
		}
	}

	// Records 0-4 are one batch; a fetch from 3 must not return 0-2.
	msgs, err = f.c.Fetch(ctx(t), "t", 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 || msgs[0].GetOffset() != 3 || msgs[1].GetOffset() != 4 {
		t.Fatalf("fetch from 3: got %v", msgs)
	}
}

func TestFetchLoopReadsAWholePartition(t *testing.T) {
	f := newFixture(t, "    fetch_max_bytes: 2000\n")
	const n = 3000
	for i := 0; i < n; i += 500 {
		recs := make([]testkit.Record, 500)
		for j := range recs {
			recs[j] = testkit.Record{Value: fmt.Sprintf("value-%05d", i+j)}
		}
		testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, recs)
	}
	next, fetches := int64(0), 0
	for next < n {
		msgs, err := f.c.Fetch(ctx(t), "t", 0, next)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			t.Fatalf("empty fetch at %d before the end", next)
		}
		for _, m := range msgs {
			if m.GetOffset() != next || string(m.GetValue()) != fmt.Sprintf("value-%05d", next) {
				t.Fatalf("got offset %d value %q, want %d", m.GetOffset(), m.GetValue(), next)
			}
			next++
		}
		fetches++
	}
	if fetches < 2 {
		t.Fatalf("%d fetches read %d records: fetch_max_bytes does not bound a fetch", fetches, n)
	}
}

func TestFetchAtTheEndIsEmptyAndPrompt(t *testing.T) {
	f := newFixture(t, "")
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, testkit.Numbered(2))
	start := time.Now()
	msgs, err := f.c.Fetch(ctx(t), "t", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 0 {
		t.Fatalf("got %d records at the end of the log", len(msgs))
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("empty fetch took %v", d)
	}
}

func TestFetchWaitsForNewRecords(t *testing.T) {
	f := newFixture(t, "    fetch_max_wait: 3s\n    request_timeout: 10s\n")
	// The record is written once the fetch, finding the log empty, sets
	// up its wait (it positions the partition's shared reader).
	var once sync.Once
	produced := make(chan struct{})
	f.kafka.ControlKey(int16(kmsg.ListOffsets), func(kmsg.Request) (kmsg.Response, error, bool) {
		f.kafka.KeepControl()
		once.Do(func() {
			go func() {
				defer close(produced)
				testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, testkit.Numbered(1))
			}()
		})
		return nil, nil, false
	})
	msgs, err := f.c.Fetch(ctx(t), "t", 0, 0)
	select {
	case <-produced:
	case <-time.After(10 * time.Second):
		t.Fatal("the fetch never positioned a reader to wait on")
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || string(msgs[0].GetValue()) != "v0" {
		t.Fatalf("got %v, want the record produced while waiting", msgs)
	}
}

func TestErrorsNameTheCommandAndCause(t *testing.T) {
	f := newFixture(t, "")
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, testkit.Numbered(3))
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"fetch unknown topic", func() error { _, err := f.c.Fetch(ctx(t), "nope", 0, 0); return err },
			"failed to fetch message, topic: nope, partition: 0, err: not found topic"},
		{"fetch unknown partition", func() error { _, err := f.c.Fetch(ctx(t), "t", 7, 0); return err },
			"failed to fetch message, topic: t, partition: 7, err: not found partition"},
		{"fetch past the end", func() error { _, err := f.c.Fetch(ctx(t), "t", 0, 100); return err },
			"failed to fetch message, topic: t, partition: 0, err: OFFSET_OUT_OF_RANGE"},
		{"fetch negative offset", func() error { _, err := f.c.Fetch(ctx(t), "t", 0, -5); return err },
			"failed to fetch message, topic: t, partition: 0, err: OFFSET_OUT_OF_RANGE"},
		{"list unknown topic", func() error { _, err := f.c.ListOffset(ctx(t), "nope", 0, -1); return err },
			"failed to list offset, topic: nope, partition: 0, err: not found topic"},
		{"list unknown partition", func() error { _, err := f.c.ListOffset(ctx(t), "t", 9, -2); return err },
			"failed to list offset, topic: t, partition: 9, err: not found partition"},
	} {
		start := time.Now()
		err := tc.run()
		if msg := serverError(t, err); msg != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, msg, tc.want)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: took %v", tc.name, d)
		}
	}
	if _, err := f.c.Ping(ctx(t), nil); err != nil {
		t.Fatalf("session unusable after errors: %v", err)
	}
}

func TestFetchAfterDeleteRecordsIsOutOfRange(t *testing.T) {
	f := newFixture(t, "")
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, testkit.Numbered(10))
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.kafka.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	req := kmsg.NewPtrDeleteRecordsRequest()
	rt := kmsg.NewDeleteRecordsRequestTopic()
	rt.Topic = "t"
	rp := kmsg.NewDeleteRecordsRequestTopicPartition()
	rp.Partition, rp.Offset = 0, 5
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	if _, err := req.RequestWith(ctx(t), cl); err != nil {
		t.Fatal(err)
	}
	_, err = f.c.Fetch(ctx(t), "t", 0, 2)
	if msg := serverError(t, err); !strings.HasSuffix(msg, "err: OFFSET_OUT_OF_RANGE") {
		t.Fatalf("got %q", msg)
	}
	if got, err := f.c.ListOffset(ctx(t), "t", 0, -2); err != nil || got != 5 {
		t.Fatalf("earliest after delete: got %d, %v; want 5", got, err)
	}
}

func TestCompressedBatchesAreDecoded(t *testing.T) {
	for _, codec := range []kgo.CompressionCodec{kgo.GzipCompression(), kgo.SnappyCompression(), kgo.Lz4Compression(), kgo.ZstdCompression()} {
		f := newFixture(t, "")
		recs := make([]testkit.Record, 50)
		for i := range recs {
			recs[i] = testkit.Record{Value: strings.Repeat("compressible ", 20) + fmt.Sprint(i)}
		}
		testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, recs, kgo.ProducerBatchCompression(codec))
		msgs, err := f.c.Fetch(ctx(t), "t", 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 40 || string(msgs[0].GetValue()) != recs[10].Value {
			t.Fatalf("codec %v: got %d records, first %q", codec, len(msgs), msgs[0].GetValue())
		}
	}
}

func TestLeaderMoveIsFollowed(t *testing.T) {
	f := newFixture(t, "")
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, testkit.Numbered(3))
	if _, err := f.c.Fetch(ctx(t), "t", 0, 0); err != nil {
		t.Fatal(err)
	}
	leader := f.kafka.LeaderFor("t", 0)
	if err := f.kafka.MoveTopicPartition("t", 0, (leader+1)%3); err != nil {
		t.Fatal(err)
	}
	msgs, err := f.c.Fetch(ctx(t), "t", 0, 1)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("fetch after leader move: got %d records, %v", len(msgs), err)
	}
	if got, err := f.c.ListOffset(ctx(t), "t", 0, -1); err != nil || got != 3 {
		t.Fatalf("list offset after leader move: %d, %v", got, err)
	}
}

func TestPipelinedRequestsAreMatchedBySequence(t *testing.T) {
	f := newFixture(t, "")
	for p := int32(0); p < 3; p++ {
		testkit.Produce(t, f.kafka.ListenAddrs(), "t", p, testkit.Numbered(int(p)+1))
	}
	reqs := make([]*pb.PubSubReq, 20)
	for i := range reqs {
		p := int32(i % 3)
		if i%2 == 0 {
			reqs[i] = &pb.PubSubReq{Sequence: int64(1000 + i), Req: &pb.PubSubReq_CmdKafkaFetch{CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: "t", Partition: p}}}
		} else {
			reqs[i] = &pb.PubSubReq{Sequence: int64(1000 + i), Req: &pb.PubSubReq_CmdKafkaListOffset{CmdKafkaListOffset: &pb.CmdKafkaListOffset{Topic: "t", Partition: p, Timestamp: -1}}}
		}
	}
	// Send all 20 before reading any reply; Send keeps our sequences.
	for _, r := range reqs {
		if err := f.c.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	got := map[int64]*pb.PubSubResp{}
	timeout := time.After(10 * time.Second)
	for len(got) < len(reqs) {
		select {
		case resp := <-f.c.Unmatched():
			got[resp.GetSequence()] = resp
		case <-timeout:
			t.Fatalf("got %d of %d replies", len(got), len(reqs))
		}
	}
	for i, r := range reqs {
		resp := got[r.GetSequence()]
		p := int64(i%3) + 1
		if i%2 == 0 {
			if len(resp.GetKafkaFetchResp().GetMessages()) != int(p) {
				t.Errorf("seq %d: got %v, want %d records", r.GetSequence(), resp, p)
			}
		} else if resp.GetKafkaListOffsetResp().GetOffset() != p {
			t.Errorf("seq %d: got %v, want offset %d", r.GetSequence(), resp, p)
		}
	}
}

func TestBrokersDownAnswerPromptly(t *testing.T) {
	f := newFixture(t, "    request_timeout: 2s\n")
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, testkit.Numbered(1))
	if _, err := f.c.Fetch(ctx(t), "t", 0, 0); err != nil {
		t.Fatal(err)
	}
	f.kafka.Close()
	start := time.Now()
	// Offset 0 is in the record cache now; the end of the log is not, so
	// this fetch needs the broker.
	_, err := f.c.Fetch(ctx(t), "t", 0, 1)
	msg := serverError(t, err)
	// The cause may add how the broker went ("...: connection closed by broker").
	if !strings.HasPrefix(msg, "failed to fetch message, topic: t, partition: 0, err: broker unreachable") {
		t.Fatalf("got %q", msg)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v with brokers down", d)
	}
	if _, err := f.c.Ping(ctx(t), []byte("ok")); err != nil {
		t.Fatalf("session unusable with brokers down: %v", err)
	}
}

func TestUnreachableBrokersAreNamed(t *testing.T) {
	srv := testkit.StartServer(t, testkit.ClusterYAML([]string{"127.0.0.1:1"}, "    request_timeout: 2s\n", ""), nil)
	c := srv.Dial(t, "kafka")
	start := time.Now()
	_, err := c.ListOffset(ctx(t), "t", 0, -1)
	if msg := serverError(t, err); msg != "failed to list offset, topic: t, partition: 0, err: broker unreachable" {
		t.Fatalf("got %q", msg)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestSessionsShareOneClientPerCluster(t *testing.T) {
	f := newFixture(t, "")
	for range 5 {
		c := f.srv.Dial(t, "kafka")
		if _, err := c.ListOffset(ctx(t), "t", 0, -1); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.srv.Pool.Clients(); n != 1 {
		t.Fatalf("%d franz-go clients for 6 sessions of one cluster, want 1", n)
	}
}
