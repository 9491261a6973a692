package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/internal/wstest"
	"github.com/envoy-pubsub/gateway/kafka"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// collect reads pushes of sub until n records of partition arrived and
// checks they are consecutive from first.
func collect(t *testing.T, sub *client.Subscription, partition int32, first int64, n int) []*pb.KafkaMessage {
	t.Helper()
	var got []*pb.KafkaMessage
	timeout := time.After(15 * time.Second)
	for len(got) < n {
		select {
		case resp, ok := <-sub.C():
			if !ok {
				t.Fatalf("subscription ended after %d of %d records", len(got), n)
			}
			fr := resp.GetKafkaFetchResp()
			if fr == nil {
				t.Fatalf("unexpected push %v", resp)
			}
			if resp.GetSequence() != sub.Sequence || fr.GetPartition() != partition || fr.GetTopic() == "" {
				t.Fatalf("push with sequence %d partition %d topic %q, want %d %d", resp.GetSequence(), fr.GetPartition(), fr.GetTopic(), sub.Sequence, partition)
			}
			got = append(got, fr.GetMessages()...)
		case <-timeout:
			t.Fatalf("got %d of %d records", len(got), n)
		}
	}
	for i, m := range got {
		if m.GetOffset() != first+int64(i) {
			t.Fatalf("record %d has offset %d, want %d (gap or duplicate)", i, m.GetOffset(), first+int64(i))
		}
	}
	return got
}

// expectQuiet checks that sub pushes nothing for a while.
func expectQuiet(t *testing.T, sub *client.Subscription) {
	t.Helper()
	select {
	case resp, ok := <-sub.C():
		if ok {
			t.Fatalf("unexpected push %v", resp)
		}
	case <-time.After(300 * time.Millisecond):
	}
}

func TestSubscribeFromEachStartPosition(t *testing.T) {
	f := newFixture(t, "")
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, testkit.SecondApart(10, base))

	for _, tc := range []struct {
		name  string
		cmd   *pb.CmdKafkaSubscribe
		first int64
	}{
		{"earliest", &pb.CmdKafkaSubscribe{Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}}, 0},
		{"offset", &pb.CmdKafkaSubscribe{Start: &pb.CmdKafkaSubscribe_Offset{Offset: 6}}, 6},
		{"timestamp", &pb.CmdKafkaSubscribe{Start: &pb.CmdKafkaSubscribe_Timestamp{Timestamp: base.Add(3 * time.Second).UnixMilli()}}, 3},
		{"per-partition offset", &pb.CmdKafkaSubscribe{Offsets: map[int32]int64{0: 8}}, 8},
		{"latest", &pb.CmdKafkaSubscribe{Start: &pb.CmdKafkaSubscribe_Latest{Latest: true}}, 10},
		{"default is latest", &pb.CmdKafkaSubscribe{}, 10},
	} {
		c := f.srv.Dial(t, "kafka")
		tc.cmd.Topic, tc.cmd.Partitions = "t", []int32{0}
		sub, err := c.Subscribe(ctx(t), tc.cmd)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(sub.Starts) != 1 || sub.Starts[0].GetPartition() != 0 || sub.Starts[0].GetOffset() != tc.first {
			t.Fatalf("%s: starts %v, want partition 0 at %d", tc.name, sub.Starts, tc.first)
		}
		if tc.first < 10 {
			got := collect(t, sub, 0, tc.first, int(10-tc.first))
			if string(got[0].GetValue()) != fmt.Sprintf("v%d", tc.first) {
				t.Fatalf("%s: first value %q", tc.name, got[0].GetValue())
			}
		}
		expectQuiet(t, sub)
	}
}

func TestSubscribeToAnOffsetOutsideTheLogFails(t *testing.T) {
	f := newFixture(t, "")
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, testkit.Numbered(3))
	_, err := f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}, Start: &pb.CmdKafkaSubscribe_Offset{Offset: 50}})
	if msg := serverError(t, err); msg != "failed to subscribe, topic: t, partition: 0, err: OFFSET_OUT_OF_RANGE" {
		t.Fatalf("got %q", msg)
	}
	_, err = f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "missing"})
	if msg := serverError(t, err); msg != "failed to subscribe, topic: missing, partition: -1, err: not found topic" {
		t.Fatalf("got %q", msg)
	}
}

func TestNewRecordsArriveWithoutPollingOnEveryPartition(t *testing.T) {
	f := newFixture(t, "")
	sub, err := f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t"}) // all 3 partitions, latest
	if err != nil {
		t.Fatal(err)
	}
	if len(sub.Starts) != 3 {
		t.Fatalf("starts %v, want 3 partitions", sub.Starts)
	}
	for p := int32(0); p < 3; p++ {
		testkit.Produce(t, f.kafka.ListenAddrs(), "t", p, testkit.Numbered(int(p)+2))
	}
	got := map[int32][]int64{}
	timeout := time.After(10 * time.Second)
	for total := 0; total < 2+3+4; {
		select {
		case resp := <-sub.C():
			fr := resp.GetKafkaFetchResp()
			for _, m := range fr.GetMessages() {
				got[fr.GetPartition()] = append(got[fr.GetPartition()], m.GetOffset())
				total++
			}
		case <-timeout:
			t.Fatalf("got %v", got)
		}
	}
	for p := int32(0); p < 3; p++ {
		if len(got[p]) != int(p)+2 || got[p][0] != 0 {
			t.Fatalf("partition %d: offsets %v", p, got[p])
		}
	}
}

func TestHeadersRoundTripInFetchAndSubscribe(t *testing.T) {
	f := newFixture(t, "")
	hdrs := []kgo.RecordHeader{{Key: "trace", Value: []byte("abc")}, {Key: "empty"}}
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 1, []testkit.Record{{Value: "x", Headers: hdrs}})
	check := func(m *pb.KafkaMessage) {
		t.Helper()
		h := m.GetHeaders()
		if len(h) != 2 || h[0].GetKey() != "trace" || string(h[0].GetValue()) != "abc" || h[1].GetKey() != "empty" || len(h[1].GetValue()) != 0 {
			t.Fatalf("headers %v", h)
		}
	}
	msgs, err := f.c.Fetch(ctx(t), "t", 1, 0)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v, %v", msgs, err)
	}
	check(msgs[0])
	sub, err := f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{1}, Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	check(collect(t, sub, 1, 0, 1)[0])
}

func TestUnsubscribeStopsDelivery(t *testing.T) {
	f := newFixture(t, "")
	sub, err := f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{2}})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 2, testkit.Numbered(3))
	collect(t, sub, 2, 0, 3)
	if err := sub.Unsubscribe(ctx(t)); err != nil {
		t.Fatal(err)
	}
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 2, testkit.Numbered(3))
	select {
	case resp := <-f.c.Unmatched():
		t.Fatalf("push after unsubscribe: %v", resp)
	case <-time.After(500 * time.Millisecond):
	}
	_, uerr := f.c.Do(ctx(t), &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaUnsubscribe{CmdKafkaUnsubscribe: &pb.CmdKafkaUnsubscribe{Subscription: sub.Sequence}}})
	if msg := serverError(t, uerr); msg != fmt.Sprintf("failed to unsubscribe, subscription: %d, err: not found subscription", sub.Sequence) {
		t.Fatalf("second unsubscribe: %q", msg)
	}
	if n := f.srv.Pool.Clients(); n != 1 {
		t.Fatalf("%d clients", n)
	}
}

func TestManySubscribersShareOneFetchStream(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	var fetches requestCounter
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "", ""), nil,
		kafka.ClientOptions(kgo.WithHooks(&fetches)))
	const sessions, batches, perBatch = 100, 20, 10
	subs := make([]*client.Subscription, sessions)
	for i := range subs {
		c := srv.Dial(t, "kafka")
		sub, err := c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}})
		if err != nil {
			t.Fatal(err)
		}
		subs[i] = sub
	}
	before := fetches.load(kmsg.Fetch)
	for b := range batches {
		recs := make([]testkit.Record, perBatch)
		for i := range recs {
			recs[i] = testkit.Record{Value: fmt.Sprintf("b%d-%d", b, i)}
		}
		testkit.Produce(t, k.ListenAddrs(), "t", 0, recs)
		time.Sleep(20 * time.Millisecond)
	}
	var wg sync.WaitGroup
	for _, sub := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			collect(t, sub, 0, 0, batches*perBatch)
		}()
	}
	wg.Wait()
	used := fetches.load(kmsg.Fetch) - before
	// Polling sessions would make at least sessions*batches fetches; one
	// shared stream makes about one per batch plus idle waits.
	if used > 5*batches {
		t.Fatalf("%d broker fetches for %d sessions and %d batches: the stream is not shared", used, sessions, batches)
	}
	t.Logf("%d broker fetches delivered %d records to each of %d sessions", used, batches*perBatch, sessions)
}

func TestFetchIsServedFromTheSharedWindow(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	var fetches requestCounter
	// The shared reader long-polls the end of the log: with a long wait,
	// its polls make at most a fetch or two while the poller reads.
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "    fetch_max_wait: 10s\n    request_timeout: 20s\n", ""), nil,
		kafka.ClientOptions(kgo.WithHooks(&fetches)))
	c := srv.Dial(t, "kafka")
	sub, err := c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Produce(t, k.ListenAddrs(), "t", 0, testkit.Numbered(50))
	collect(t, sub, 0, 0, 50)
	poller := srv.Dial(t, "kafka")
	before := fetches.load(kmsg.Fetch)
	// A fetch at every offset: from Kafka, each would be a broker fetch.
	for next := int64(10); next < 50; next++ {
		msgs, err := poller.Fetch(ctx(t), "t", 0, next)
		if err != nil || len(msgs) == 0 || msgs[0].GetOffset() != next {
			t.Fatalf("fetch at %d: %v, %v", next, msgs, err)
		}
	}
	// The reader's own long-poll may end and start again meanwhile.
	if used := fetches.load(kmsg.Fetch) - before; used > 2 {
		t.Fatalf("%d broker fetches for fetches inside the window", used)
	}
}

func TestSlowSubscriberIsClosedWhileAFastOneKeepsUp(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "",
		"session: {push_queue_bytes: 65536, push_stall_timeout: 300ms}\n"), nil)

	// The slow client subscribes with raw frames and then reads nothing. A
	// small receive buffer keeps the kernel from absorbing the backlog.
	dialer := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			err = conn.(*net.TCPConn).SetReadBuffer(64 << 10)
		}
		return conn, err
	}}
	slow, br, _, err := dialer.Dial(ctx(t), srv.URL("kafka"))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	b, _ := proto.Marshal(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdKafkaSubscribe{CmdKafkaSubscribe: &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}}}})
	if err := ws.WriteFrame(slow, ws.MaskFrame(ws.NewBinaryFrame(b))); err != nil {
		t.Fatal(err)
	}
	var rd interface{ Read([]byte) (int, error) } = slow
	if br != nil {
		rd = br
	}
	// The slow subscription has started once it is acknowledged.
	slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	ack, err := wstest.ReadFrame(rd, 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	var ackResp pb.PubSubResp
	if err := proto.Unmarshal(ack.Payload, &ackResp); err != nil || ackResp.GetKafkaSubscribeResp() == nil {
		t.Fatalf("slow client: got %v, %v; want the subscription's acknowledgement", &ackResp, err)
	}
	fast := srv.Dial(t, "kafka")
	sub, err := fast.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}})
	if err != nil {
		t.Fatal(err)
	}

	const n, size = 2000, 8 << 10 // 16 MB: more than the socket buffers hold
	value := string(make([]byte, size))
	for i := 0; i < n; i += 500 {
		recs := make([]testkit.Record, 500)
		for j := range recs {
			recs[j] = testkit.Record{Value: value}
		}
		testkit.Produce(t, k.ListenAddrs(), "t", 0, recs)
	}
	collect(t, sub, 0, 0, n)
	time.Sleep(time.Second) // the slow client stays stuck beyond push_stall_timeout

	// Now the slow client reads: what was in flight, then close 4008, or,
	// since its socket was full at the deadline, the end of the connection:
	// the server abandoned the write and closed it rather than waiting.
	slow.SetReadDeadline(time.Now().Add(20 * time.Second))
	frames := 0
	for {
		f, err := wstest.ReadFrame(rd, 4<<20)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("slow client: still connected after %d frames", frames)
			}
			break
		}
		frames++
		if f.Header.OpCode == ws.OpClose {
			code, reason := ws.ParseCloseFrameData(f.Payload)
			if code != 4008 {
				t.Fatalf("slow client closed with %d %q, want 4008", code, reason)
			}
			break
		}
	}
	// The fast client is still served.
	if _, err := fast.Ping(ctx(t), nil); err != nil {
		t.Fatalf("fast client after the slow one was closed: %v", err)
	}
}

func TestResumeAfterReconnectHasNoGapsOrDuplicates(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(2, "t"))
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "", ""), nil)
	stop := make(chan struct{})
	var produced sync.WaitGroup
	produced.Add(1)
	go func() { // keep producing to both partitions while clients come and go
		defer produced.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			testkit.Produce(t, k.ListenAddrs(), "t", int32(i%2), testkit.Numbered(5))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	next := map[int32]int64{0: 0, 1: 0}
	for round := range 4 {
		c := srv.Dial(t, "kafka")
		sub, err := c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Offsets: next, Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range sub.Starts {
			if s.GetOffset() != next[s.GetPartition()] {
				t.Fatalf("round %d: partition %d starts at %d, want %d", round, s.GetPartition(), s.GetOffset(), next[s.GetPartition()])
			}
		}
		for got := 0; got < 60; {
			select {
			case resp := <-sub.C():
				fr := resp.GetKafkaFetchResp()
				for _, m := range fr.GetMessages() {
					if m.GetOffset() != next[fr.GetPartition()] {
						t.Fatalf("round %d partition %d: offset %d, want %d", round, fr.GetPartition(), m.GetOffset(), next[fr.GetPartition()])
					}
					next[fr.GetPartition()]++
					got++
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("round %d: stalled at %v", round, next)
			}
		}
		c.Close() // a disconnect without unsubscribing
	}
	close(stop)
	produced.Wait()
}

func TestSubscriptionsEndWithTheSession(t *testing.T) {
	f := newFixture(t, "")
	c := f.srv.Dial(t, "kafka")
	if _, err := c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	doc, err := config.Parse([]byte(testkit.ClusterYAML(f.kafka.ListenAddrs(), "", "")))
	if err != nil {
		t.Fatal(err)
	}
	k, err := f.srv.Pool.Acquire(doc.KafkaClusters["kafka"]) // the sessions' shared client
	if err != nil {
		t.Fatal(err)
	}
	defer k.Release()
	for start := time.Now(); k.Readers() != 3 && time.Since(start) < 5*time.Second; {
		time.Sleep(10 * time.Millisecond)
	}
	if n := k.Readers(); n != 3 {
		t.Fatalf("%d readers for a 3-partition subscription", n)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for k.Readers() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := k.Readers(); n != 0 {
		t.Fatalf("%d readers after the only subscriber left", n)
	}
}

// Waits at the end of the log must not queue behind each other: with one
// long poll per partition or per session on a shared connection, a record
// on the last of many idle partitions would wait for every other poll.
func TestIdleWaitsDoNotHoldEachOtherUp(t *testing.T) {
	const partitions = 20
	k := testkit.Kafka(t, kfake.SeedTopics(partitions, "t"))
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "    fetch_max_wait: 1s\n", ""), nil)

	c := srv.Dial(t, "kafka")
	sub, err := c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	// Sessions polling the tail of every partition, APISIX style.
	polled := make(chan int32, partitions)
	for p := range int32(partitions) {
		poller := srv.Dial(t, "kafka")
		go func() {
			for {
				msgs, err := poller.Fetch(ctx(t), "t", p, 0)
				if err != nil || len(msgs) > 0 {
					polled <- p
					return
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond) // every reader and poller is idle now
	start := time.Now()
	testkit.Produce(t, k.ListenAddrs(), "t", partitions-1, testkit.Numbered(1))
	collect(t, sub, partitions-1, 0, 1)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("a record on the last idle partition took %v to reach a subscriber", d)
	}
	select {
	case p := <-polled:
		if p != partitions-1 {
			t.Fatalf("poller of partition %d returned", p)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("a tail poller got the record only after %v", time.Since(start))
	}
}

func TestDeletedTopicEndsItsSubscriptionsWithAnError(t *testing.T) {
	f := newFixture(t, "")
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, testkit.Numbered(3))
	sub, err := f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}, Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	collect(t, sub, 0, 0, 3)
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.kafka.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).DeleteTopics(ctx(t), "t"); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-sub.C():
		if msg := resp.GetErrorResp().GetMessage(); msg != "failed to subscribe, topic: t, partition: 0, err: not found topic" {
			t.Fatalf("live subscription after the topic was deleted: %v", resp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the live subscription was not told that its topic is gone")
	}
	// A reconnecting subscriber is refused; the live one keeps its session.
	c := f.srv.Dial(t, "kafka")
	_, err = c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}})
	if msg := serverError(t, err); msg != "failed to subscribe, topic: t, partition: 0, err: not found topic" {
		t.Fatalf("subscribe to a deleted topic: %q", msg)
	}
	if _, err := f.c.Ping(ctx(t), nil); err != nil {
		t.Fatal(err)
	}
}

func TestSubscriberThatOnlyListensIsNotIdle(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "", "session: {idle_timeout: 300ms}\n"), nil)
	listener, idle := srv.Dial(t, "kafka"), srv.Dial(t, "kafka")
	sub, err := listener.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-idle.Done(): // a session with nothing live is closed as idle
	case <-time.After(5 * time.Second):
		t.Fatal("an idle session was not closed")
	}
	time.Sleep(500 * time.Millisecond) // past the idle timeout for the listener too
	testkit.Produce(t, k.ListenAddrs(), "t", 0, testkit.Numbered(1))
	collect(t, sub, 0, 0, 1)
	if err := sub.Unsubscribe(ctx(t)); err != nil {
		t.Fatal(err)
	}
	select { // with its subscription gone, the listener idles out too
	case <-listener.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a session without live subscriptions was not closed as idle")
	}
}
