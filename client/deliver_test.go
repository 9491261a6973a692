package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// records is a push of one record of partition p at offset off.
func records(p int32, off int64) *pb.PubSubResp {
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{
		Topic: "t", Partition: p, Messages: []*pb.KafkaMessage{{Offset: off, Value: make([]byte, 100)}}, NextOffset: off + 1,
	}}}
}

// assignment is a kafka_assignment push.
func assignment(assigned, revoked []int32) *pb.PubSubResp {
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaAssignment{KafkaAssignment: &pb.KafkaAssignment{
		Topic: "t", Assigned: assigned, Revoked: revoked,
	}}}
}

// pushingMux acknowledges a subscription and then pushes push(0),
// push(1), ... at once: n of them, or until the session ends when n is
// negative. It answers commits after sending them to commits (if not nil)
// and unsubscribes.
func pushingMux(n int, push func(i int) *pb.PubSubResp, commits chan<- *pb.CmdKafkaCommit) *pubsub.Mux {
	mux := pubsub.NewMux()
	mux.On(pubsub.CmdKafkaSubscribe, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		req.Push(ctx, &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaSubscribeResp{KafkaSubscribeResp: &pb.KafkaSubscribeResp{}}})
		for i := 0; n < 0 || i < n; i++ {
			if err := req.Push(req.Context(), push(i)); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}))
	mux.On(pubsub.CmdKafkaCommit, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		if commits != nil {
			commits <- req.Msg.GetCmdKafkaCommit()
		}
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaCommitResp{KafkaCommitResp: &pb.KafkaCommitResp{}}}, nil
	}))
	mux.On(pubsub.CmdKafkaUnsubscribe, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		seq := req.Msg.GetCmdKafkaUnsubscribe().GetSubscription()
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaUnsubscribeResp{KafkaUnsubscribeResp: &pb.KafkaUnsubscribeResp{Subscription: seq}}}, nil
	}))
	return mux
}

// partition0 pushes the records of partition 0 from offset 0 on.
func partition0(i int) *pb.PubSubResp { return records(0, int64(i)) }

// waitFor waits until cond holds, failing the test after 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// held returns the bytes of pushes c holds for subscription readers.
func held(c *Client) int {
	c.pushes.mu.Lock()
	defer c.pushes.mu.Unlock()
	return c.pushes.held
}

// takeInOrder reads n pushes of partition 0 from sub and fails unless
// they continue at offset from, one after another.
func takeInOrder(t *testing.T, sub *Subscription, from int64, n int) {
	t.Helper()
	for want := from; want < from+int64(n); want++ {
		select {
		case resp, ok := <-sub.C():
			if !ok {
				t.Fatalf("C closed before offset %d", want)
			}
			if got := resp.GetKafkaFetchResp().GetMessages()[0].GetOffset(); got != want {
				t.Fatalf("push of offset %d, want %d", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no push of offset %d", want)
		}
	}
}

// errEnough ends a Handle that has seen what the test waits for.
var errEnough = errors.New("enough")

// TestHandleCommitsEveryRecordWhileHundredsArePushed: an OnRecords that
// commits each record it handles, while the server has pushed hundreds
// more at once, gets every commit answered and every record once, in order.
// The connection's reader used to wait for Handle to take the 66th push,
// so the first commit's reply was never read.
func TestHandleCommitsEveryRecordWhileHundredsArePushed(t *testing.T) {
	const n = 500
	c, _ := serve(t, pushingMux(n, partition0, nil))
	ctx := testCtx(t)
	sub, err := c.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "t", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	next := int64(0)
	err = sub.Handle(ctx, GroupHandler{OnRecords: func(topic string, p int32, msgs []*pb.KafkaMessage) error {
		for _, m := range msgs {
			if m.GetOffset() != next {
				t.Fatalf("record at %d, want %d", m.GetOffset(), next)
			}
			next++
		}
		if err := c.Commit(ctx, "g", topic, &pb.KafkaPartitionOffset{Partition: p, Offset: next}); err != nil {
			return err
		}
		if next == n {
			return errEnough
		}
		return nil
	}})
	if !errors.Is(err, errEnough) {
		t.Fatalf("Handle ended with %v after %d records, want all %d committed", err, next, n)
	}
}

// TestRevocationCommitsWhileHundredsOfPushesFollow: the README's group
// member commits revoked partitions from OnAssignment while 200 pushes of
// the partition it keeps are already read by the connection; the commit is
// answered and every record is handled.
func TestRevocationCommitsWhileHundredsOfPushesFollow(t *testing.T) {
	const kept = 200
	pushes := []*pb.PubSubResp{assignment([]int32{0, 1}, nil), records(0, 7), assignment(nil, []int32{0})}
	for off := range int64(kept) {
		pushes = append(pushes, records(1, off))
	}
	commits := make(chan *pb.CmdKafkaCommit, 1)
	c, _ := serve(t, pushingMux(len(pushes), func(i int) *pb.PubSubResp { return pushes[i] }, commits))
	ctx := testCtx(t)
	sub, err := c.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "t", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	next := map[int32]int64{}
	handled := 0
	err = sub.Handle(ctx, GroupHandler{
		OnRecords: func(topic string, p int32, msgs []*pb.KafkaMessage) error {
			for _, m := range msgs {
				next[p] = m.GetOffset() + 1
				handled++
			}
			if handled == 1+kept {
				return errEnough
			}
			return nil
		},
		OnAssignment: func(a *pb.KafkaAssignment) error {
			var done []*pb.KafkaPartitionOffset
			for _, p := range a.GetRevoked() {
				done = append(done, &pb.KafkaPartitionOffset{Partition: p, Offset: next[p]})
			}
			if len(done) == 0 {
				return nil
			}
			// The connection has read the subscription's acknowledgement, the
			// three pushes up to this revocation and 65 more: more than a
			// queue of 64 pushes holds.
			waitFor(t, "65 pushes after the revocation", func() bool { return c.heard.Load() >= 1+3+65 })
			return c.Commit(ctx, "g", "t", done...)
		},
	})
	if !errors.Is(err, errEnough) {
		t.Fatalf("Handle ended with %v after %d records, want %d", err, handled, 1+kept)
	}
	if got := <-commits; len(got.GetOffsets()) != 1 || got.GetOffsets()[0].GetPartition() != 0 || got.GetOffsets()[0].GetOffset() != 8 {
		t.Errorf("committed %v, want partition 0 at 8", got)
	}
}

// TestReaderPausesAtPushBufferBytesAndReadsOnForARequest: a subscription
// whose pushes are not taken makes the connection's reader stop at
// PushBufferBytes, yet a request made meanwhile is answered, and then every
// push arrives once, in order.
func TestReaderPausesAtPushBufferBytesAndReadsOnForARequest(t *testing.T) {
	const pause = 4096
	c, _ := serveWith(t, pushingMux(-1, partition0, nil), Options{PushBufferBytes: pause})
	sub, err := c.Subscribe(testCtx(t), &pb.CmdKafkaSubscribe{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reader to pause", c.delivering.Load)
	pushSize := proto.Size(records(0, 1<<20))
	if got := held(c); got < pause || got > pause+pushSize {
		t.Fatalf("paused holding %d bytes, want %d to %d", got, pause, pause+pushSize)
	}
	if _, err := c.Ping(testCtx(t), nil); err != nil {
		t.Fatalf("ping while the reader paused: %v", err)
	}
	takeInOrder(t, sub, 0, 1000)
}

// TestMaxPushBufferBytesEndsTheConnection: while a request waits for a
// reply that does not come and the subscription's pushes are not taken,
// the client holds no more than MaxPushBufferBytes: the connection ends
// with ErrPushBufferFull, and the pushes it held are still delivered, in
// order, before C closes.
func TestMaxPushBufferBytesEndsTheConnection(t *testing.T) {
	const limit = 16 << 10
	mux := pushingMux(-1, partition0, nil)
	mux.On(pubsub.CmdKafkaFetch, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		<-req.Context().Done() // the reply never comes
		return nil, req.Context().Err()
	}))
	c, _ := serveWith(t, mux, Options{PushBufferBytes: 1024, MaxPushBufferBytes: limit})
	sub, err := c.Subscribe(testCtx(t), &pb.CmdKafkaSubscribe{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(testCtx(t), "t", 0, 0); !errors.Is(err, ErrPushBufferFull) {
		t.Fatalf("fetch ended with %v, want ErrPushBufferFull", err)
	}
	if got := held(c); got > limit {
		t.Fatalf("held %d bytes, more than %d", got, limit)
	}
	n := 0
	for resp := range sub.C() {
		if got := resp.GetKafkaFetchResp().GetMessages()[0].GetOffset(); got != int64(n) {
			t.Fatalf("push of offset %d, want %d", got, n)
		}
		n++
	}
	if n == 0 || held(c) != 0 {
		t.Fatalf("%d pushes delivered after the end, %d bytes still held", n, held(c))
	}
}

// TestUnsubscribeDropsTheQueuedPushes: Unsubscribe on a subscription whose
// reader fell behind closes C at once and releases what it held.
func TestUnsubscribeDropsTheQueuedPushes(t *testing.T) {
	c, _ := serveWith(t, pushingMux(-1, partition0, nil), Options{PushBufferBytes: 4096})
	sub, err := c.Subscribe(testCtx(t), &pb.CmdKafkaSubscribe{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	takeInOrder(t, sub, 0, 10)
	waitFor(t, "the reader to pause", c.delivering.Load)
	if err := sub.Unsubscribe(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	select {
	case resp, open := <-sub.C():
		if open {
			t.Fatalf("push %v after Unsubscribe", resp)
		}
	default:
		t.Fatal("C not closed when Unsubscribe returned")
	}
	waitFor(t, "the queued pushes to be released", func() bool { return held(c) == 0 })
	if _, err := c.Ping(testCtx(t), nil); err != nil {
		t.Fatal(err)
	}
}

// TestPushesReceivedBeforeTheEndAreDelivered: when the connection ends,
// the pushes it received are still taken from C, then C closes.
func TestPushesReceivedBeforeTheEndAreDelivered(t *testing.T) {
	const n = 100
	c, cancel := serve(t, pushingMux(n, partition0, nil))
	sub, err := c.Subscribe(testCtx(t), &pb.CmdKafkaSubscribe{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every push to be read", func() bool { return c.heard.Load() >= 1+n })
	cancel()
	<-c.Done()
	takeInOrder(t, sub, 0, n)
	if _, open := <-sub.C(); open {
		t.Fatal("C open after the end and its pushes")
	}
}

// TestCloseReturnsWhileASubscriptionIsNotRead: Close does not wait for the
// reader of a subscription that stopped taking pushes; it closes C and
// releases the pushes queued for it.
func TestCloseReturnsWhileASubscriptionIsNotRead(t *testing.T) {
	c, _ := serveWith(t, pushingMux(-1, partition0, nil), Options{PushBufferBytes: 4096})
	sub, err := c.Subscribe(testCtx(t), &pb.CmdKafkaSubscribe{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reader to pause", c.delivering.Load)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		c.Close()
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for the subscription's reader")
	}
	select {
	case <-sub.pumped:
	case <-time.After(5 * time.Second):
		t.Fatal("C not closed after Close")
	}
	if got := held(c); got != 0 {
		t.Fatalf("%d bytes held after Close", got)
	}
}

// TestAPushWithNothingBeforeItIsOnCAtOnce: a push handed over while no
// push waits before it is in C's buffer when deliver returns, so a push the
// server sent before a reply is on C by the time the reply is returned
// (the group revocation before an unsubscribe reply); past C's buffer,
// pushes wait in the queue, counted, and all arrive in order.
func TestAPushWithNothingBeforeItIsOnCAtOnce(t *testing.T) {
	c := &Client{}
	c.pushes.init(Options{})
	sub := &Subscription{
		c:      c,
		ch:     make(chan *pb.PubSubResp, subscriptionBuffer),
		ready:  make(chan struct{}, 1),
		stop:   make(chan struct{}),
		pumped: make(chan struct{}),
	}
	if err := c.deliver(sub, partition0(0), 100); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-sub.C():
		if off := resp.GetKafkaFetchResp().GetMessages()[0].GetOffset(); off != 0 {
			t.Fatalf("push at offset %d, want 0", off)
		}
	default:
		t.Fatal("the push is not on C when deliver returns")
	}
	if n := held(c); n != 0 {
		t.Errorf("%d bytes held for a push already on C", n)
	}
	for i := 1; i <= subscriptionBuffer+10; i++ {
		if err := c.deliver(sub, partition0(i), 100); err != nil {
			t.Fatal(err)
		}
	}
	if n := held(c); n != 10*100 {
		t.Errorf("%d bytes held, want the 10 pushes past C's buffer (1000)", n)
	}
	go sub.pump()
	for i := 1; i <= subscriptionBuffer+10; i++ {
		resp := <-sub.C()
		if off := resp.GetKafkaFetchResp().GetMessages()[0].GetOffset(); off != int64(i) {
			t.Fatalf("push at offset %d, want %d", off, i)
		}
	}
	waitFor(t, "the queue's bytes released", func() bool { return held(c) == 0 })
	sub.once.Do(func() { close(sub.stop) })
	<-sub.pumped
}
