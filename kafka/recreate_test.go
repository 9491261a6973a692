package kafka_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// valued returns n records with values "<prefix>-0".."<prefix>-<n-1>".
func valued(prefix string, n int) []testkit.Record {
	recs := make([]testkit.Record, n)
	for i := range recs {
		recs[i] = testkit.Record{Value: fmt.Sprintf("%s-%d", prefix, i)}
	}
	return recs
}

// valuesOf returns the values of msgs.
func valuesOf(msgs []*pb.KafkaMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.GetValue())
	}
	return out
}

// recreate deletes topic and creates it again with partitions partitions.
func recreate(t *testing.T, k *kfake.Cluster, topic string, partitions int32) {
	t.Helper()
	if err := k.DeleteTopic(topic); err != nil {
		t.Fatalf("delete topic: %v", err)
	}
	if err := k.CreateTopic(topic, partitions, nil); err != nil {
		t.Fatalf("create topic: %v", err)
	}
}

// fetchAll runs a fetch loop over partition from offset 0 until an empty
// reply, as a client reading a partition from its start does.
func fetchAll(t *testing.T, c *client.Client, topic string, partition int32) []string {
	t.Helper()
	var got []string
	for offset := int64(0); ; {
		msgs, err := c.Fetch(ctx(t), topic, partition, offset)
		if err != nil {
			t.Fatalf("fetch at %d: %v", offset, err)
		}
		if len(msgs) == 0 {
			return got
		}
		got = append(got, valuesOf(msgs)...)
		offset = msgs[len(msgs)-1].GetOffset() + 1
	}
}

// subscribeOne subscribes c to partition 0 of "t" from start.
func subscribeOne(t *testing.T, c *client.Client, start *pb.CmdKafkaSubscribe) *client.Subscription {
	t.Helper()
	start.Topic, start.Partitions = "t", []int32{0}
	sub, err := c.Subscribe(ctx(t), start)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	return sub
}

var (
	earliest = func() *pb.CmdKafkaSubscribe {
		return &pb.CmdKafkaSubscribe{Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}}
	}
	latest = func() *pb.CmdKafkaSubscribe {
		return &pb.CmdKafkaSubscribe{Start: &pb.CmdKafkaSubscribe_Latest{Latest: true}}
	}
)

// subscriptionError waits for an error_resp of sub and returns its message.
func subscriptionError(t *testing.T, sub *client.Subscription) string {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case resp, ok := <-sub.C():
			if !ok {
				t.Fatal("the subscription ended without an error")
			}
			if e := resp.GetErrorResp(); e != nil {
				return e.GetMessage()
			}
		case <-timeout:
			t.Fatal("no error pushed")
		}
	}
}

// TestRecreatedTopicAfterASubscriptionWarmUp: records a subscription read
// through the shared reader are never served for the topic created again
// under the same name, to a fetch loop or to a new subscription.
func TestRecreatedTopicAfterASubscriptionWarmUp(t *testing.T) {
	f := newFixture(t, "")
	warm := subscribeOne(t, f.c, latest())
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, valued("old", 10))
	collect(t, warm, 0, 0, 10)
	if err := warm.Unsubscribe(ctx(t)); err != nil {
		t.Fatal(err)
	}

	recreate(t, f.kafka, "t", 3)
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, valued("new", 5))
	want := []string{"new-0", "new-1", "new-2", "new-3", "new-4"}

	sub := subscribeOne(t, f.srv.Dial(t, "kafka"), earliest())
	if got := valuesOf(collect(t, sub, 0, 0, 5)); !slices.Equal(got, want) {
		t.Fatalf("subscription from earliest: %v, want %v", got, want)
	}
	expectQuiet(t, sub)
	if got := fetchAll(t, f.srv.Dial(t, "kafka"), "t", 0); !slices.Equal(got, want) {
		t.Fatalf("fetch loop from 0 after the topic was created again: %v, want %v", got, want)
	}
}

// TestRecreatedTopicUnderALiveReader: a topic deleted and created again
// while a subscription's shared reader tails it. The subscription is told
// the topic is gone; fetches and new subscriptions (earliest and latest)
// read the new topic only, and new records reach them.
func TestRecreatedTopicUnderALiveReader(t *testing.T) {
	f := newFixture(t, "")
	live := subscribeOne(t, f.c, latest())
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, valued("old", 10))
	collect(t, live, 0, 0, 10)

	recreate(t, f.kafka, "t", 3)
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, valued("new", 5))

	if msg := subscriptionError(t, live); !strings.HasSuffix(msg, "topic: t, partition: 0, err: not found topic") {
		t.Fatalf("the subscription of the deleted topic got %q", msg)
	}
	c := f.srv.Dial(t, "kafka")
	if got := fetchAll(t, c, "t", 0); !slices.Equal(got, []string{"new-0", "new-1", "new-2", "new-3", "new-4"}) {
		t.Fatalf("fetch loop from 0: %v, want new-0..new-4", got)
	}
	fromStart := subscribeOne(t, f.srv.Dial(t, "kafka"), earliest())
	if got := valuesOf(collect(t, fromStart, 0, 0, 5)); got[0] != "new-0" || got[4] != "new-4" {
		t.Fatalf("subscription from earliest: %v, want new-0..new-4", got)
	}
	atEnd := subscribeOne(t, f.srv.Dial(t, "kafka"), latest())
	if start := atEnd.Starts[0].GetOffset(); start != 5 {
		t.Fatalf("subscription at latest starts at %d, want 5", start)
	}
	expectQuiet(t, atEnd) // nothing of the old topic's offsets 5..9
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, []testkit.Record{{Value: "new-5"}, {Value: "new-6"}})
	if got := valuesOf(collect(t, atEnd, 0, 5, 2)); !slices.Equal(got, []string{"new-5", "new-6"}) {
		t.Fatalf("subscription at latest: %v, want [new-5 new-6]", got)
	}
	if got := valuesOf(collect(t, fromStart, 0, 5, 2)); !slices.Equal(got, []string{"new-5", "new-6"}) {
		t.Fatalf("subscription from earliest, at the end: %v, want [new-5 new-6]", got)
	}
}

// pushLog drains a subscription's pushes (so that the client never blocks
// on it) and keeps their record values and error messages.
type pushLog struct {
	mu      sync.Mutex
	values  []string
	errs    []string
	changed chan struct{}
	ended   bool
}

func drain(sub *client.Subscription) *pushLog {
	l := &pushLog{changed: make(chan struct{})}
	go func() {
		for resp := range sub.C() {
			l.mu.Lock()
			if e := resp.GetErrorResp(); e != nil {
				l.errs = append(l.errs, e.GetMessage())
			}
			if fr := resp.GetKafkaFetchResp(); fr != nil {
				l.values = append(l.values, valuesOf(fr.GetMessages())...)
			}
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.ended = true
		close(l.changed)
		l.mu.Unlock()
	}()
	return l
}

// await waits until cond holds of the values and errors pushed so far.
func (l *pushLog) await(t *testing.T, what string, cond func(values, errs []string) bool) {
	t.Helper()
	firstErrs := func(errs []string) []string { return errs[:min(len(errs), 5)] }
	timeout := time.After(15 * time.Second)
	for {
		l.mu.Lock()
		values, errs, ended, changed := slices.Clone(l.values), slices.Clone(l.errs), l.ended, l.changed
		l.mu.Unlock()
		if cond(values, errs) {
			return
		}
		if ended {
			t.Fatalf("the subscription ended before %s: records %v, %d errors %v", what, values, len(errs), firstErrs(errs))
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("no %s: records %v, %d errors %v", what, values, len(errs), firstErrs(errs))
		}
	}
}

// TestRecreatedTopicUnderAGroupMember: a group member whose topic is
// deleted and created again is told, then reads the new topic, never the
// old one's records.
func TestRecreatedTopicUnderAGroupMember(t *testing.T) {
	f := newFixture(t, "    groups: [g]\n")
	sub, err := f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Group: "g", Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	pushes := drain(sub)
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, valued("old", 10))
	pushes.await(t, "the old records", func(values, _ []string) bool { return len(values) >= 10 })
	recreate(t, f.kafka, "t", 3)
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, valued("new", 5))
	start := time.Now()
	pushes.await(t, "the error", func(_, errs []string) bool { return len(errs) > 0 })
	t.Logf("error after %v", time.Since(start))
	pushes.await(t, "the new records", func(values, _ []string) bool { return len(values) >= 15 })
	t.Logf("records after %v", time.Since(start))
	if d := time.Since(start); d >= kafka.RevokeCommitTimeout {
		t.Fatalf("the new records came after %v: the member waited for commits of the deleted topic", d)
	}
	pushes.mu.Lock()
	defer pushes.mu.Unlock()
	if got := pushes.values[10:]; !slices.Equal(got, []string{"new-0", "new-1", "new-2", "new-3", "new-4"}) {
		t.Fatalf("after the topic was created again: %v; want new-0..new-4", got)
	}
	// The member is told, once per partition it held, not on every poll.
	if len(pushes.errs) == 0 || len(pushes.errs) > 3 {
		t.Fatalf("%d errors pushed, want one per partition: %v", len(pushes.errs), pushes.errs[:min(len(pushes.errs), 5)])
	}
	for _, e := range pushes.errs {
		if !strings.HasSuffix(e, "err: not found topic") {
			t.Fatalf("error %q, want the topic not found", e)
		}
	}
}
