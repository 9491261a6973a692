package client_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// countingConn counts the bytes read from a connection.
type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// exactlyOnce records which member handled each record of a topic.
type exactlyOnce struct {
	mu   sync.Mutex
	seen map[int32]map[int64]string
	dups []string
}

func (e *exactlyOnce) add(member string, p int32, msgs []*pb.KafkaMessage) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen[p] == nil {
		e.seen[p] = map[int64]string{}
	}
	for _, m := range msgs {
		if first, ok := e.seen[p][m.GetOffset()]; ok {
			e.dups = append(e.dups, fmt.Sprintf("%d/%d by %s and %s", p, m.GetOffset(), first, member))
		}
		e.seen[p][m.GetOffset()] = member
	}
}

// count returns how many records of p were handled.
func (e *exactlyOnce) count(p int32) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen[p])
}

// TestGroupMemberCommitsEachRecordAndItsRevocation: a group member that
// commits after each record it handles, while hundreds of pushes reach its
// connection, gets every commit answered; when a second member joins, it
// commits its revoked partition from OnAssignment, as the README shows, and
// the other member takes over at that offset: every record is handled once.
// The connection's reader used to wait for Handle to take the 66th push, so
// the first commit's reply was never read.
func TestGroupMemberCommitsEachRecordAndItsRevocation(t *testing.T) {
	const before, after = 300, 10
	k := testkit.Kafka(t, kfake.SeedTopics(2, "events"))
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "    groups: ['app']\n", ""), nil,
		kafka.ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond)))
	for p := range int32(2) {
		testkit.Produce(t, k.ListenAddrs(), "events", p, testkit.Numbered(before))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var read atomic.Int64
	c1, err := client.Dial(ctx, srv.URL("kafka"), client.Options{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		return countingConn{conn, &read}, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	subscribe := &pb.CmdKafkaSubscribe{Topic: "events", Group: "app", MaxRecords: 1, Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}}
	sub1, err := c1.Subscribe(ctx, subscribe)
	if err != nil {
		t.Fatal(err)
	}
	// Each push carries one record: a push is at least this large.
	minPush := int64(2 + proto.Size(&pb.PubSubResp{Sequence: sub1.Sequence, Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{
		Topic: "events", Messages: []*pb.KafkaMessage{{Key: []byte("k0"), Value: []byte("v0")}},
	}}}))
	subscribed := read.Load()
	records := &exactlyOnce{seen: map[int32]map[int64]string{}}
	next := map[int32]int64{} // of m1, per partition: last handled + 1
	moved := make(chan int32, 1)
	m1 := make(chan error, 1)
	go func() {
		m1 <- sub1.Handle(ctx, client.GroupHandler{
			OnRecords: func(topic string, p int32, msgs []*pb.KafkaMessage) error {
				// The first commit waits until more pushes reached the
				// connection than a queue of 64 holds.
				for read.Load() < subscribed+66*minPush {
					select {
					case <-ctx.Done():
						return ctx.Err()
					case <-time.After(time.Millisecond):
					}
				}
				records.add("m1", p, msgs)
				next[p] = msgs[len(msgs)-1].GetOffset() + 1
				return commit(ctx, c1, &pb.KafkaPartitionOffset{Partition: p, Offset: next[p]})
			},
			OnAssignment: func(a *pb.KafkaAssignment) error {
				var done []*pb.KafkaPartitionOffset
				for _, p := range a.GetRevoked() {
					done = append(done, &pb.KafkaPartitionOffset{Partition: p, Offset: next[p]})
					delete(next, p)
				}
				if len(done) == 0 {
					return nil
				}
				if err := commit(ctx, c1, done...); err != nil {
					return err
				}
				moved <- done[0].GetPartition()
				return nil
			},
		})
	}()
	waitUntil(t, ctx, m1, "m1 to handle every record", func() bool { return records.count(0) == before && records.count(1) == before })

	c2 := srv.Dial(t, "kafka")
	sub2, err := c2.Subscribe(ctx, subscribe)
	if err != nil {
		t.Fatal(err)
	}
	go sub2.Handle(ctx, client.GroupHandler{OnRecords: func(topic string, p int32, msgs []*pb.KafkaMessage) error {
		records.add("m2", p, msgs)
		return nil
	}})
	var p2 int32
	select {
	case p2 = <-moved:
	case err := <-m1:
		t.Fatalf("m1 ended: %v", err)
	case <-ctx.Done():
		t.Fatal("no revocation")
	}
	for p := range int32(2) {
		testkit.Produce(t, k.ListenAddrs(), "events", p, testkit.Numbered(after))
	}
	waitUntil(t, ctx, m1, "every record", func() bool { return records.count(0) == before+after && records.count(1) == before+after })
	records.mu.Lock()
	defer records.mu.Unlock()
	if len(records.dups) > 0 {
		t.Fatalf("records handled twice: %v", records.dups)
	}
	for off := int64(before); off < before+after; off++ {
		if by := records.seen[p2][off]; by != "m2" {
			t.Errorf("record %d/%d handled by %q, want m2, its owner after the revocation", p2, off, by)
		}
	}
}

// commit commits offsets of group app on topic events, within 5 seconds.
func commit(ctx context.Context, c *client.Client, offsets ...*pb.KafkaPartitionOffset) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Commit(ctx, "app", "events", offsets...); err != nil {
		return fmt.Errorf("commit %v: %w", offsets, err)
	}
	return nil
}

// waitUntil waits until cond holds, failing the test when ctx ends or a
// member's Handle returns first.
func waitUntil(t *testing.T, ctx context.Context, member <-chan error, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("still waiting for %s", what)
		case err := <-member:
			t.Fatalf("waiting for %s: the member's Handle ended with %v", what, err)
		case <-time.After(time.Millisecond):
		}
	}
}
