package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
	pb "github.com/envoy-pubsub/gateway/proto"
)

func offsetsOf(pos ...int64) []*pb.KafkaPartitionOffset {
	out := make([]*pb.KafkaPartitionOffset, 0, len(pos)/2)
	for i := 0; i+1 < len(pos); i += 2 {
		out = append(out, &pb.KafkaPartitionOffset{Partition: int32(pos[i]), Offset: pos[i+1]})
	}
	return out
}

func assertCommitted(t *testing.T, c *client.Client, group, topic string, partitions []int32, want ...int64) {
	t.Helper()
	got, err := c.Committed(ctx(t), group, topic, partitions...)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want)/2 {
		t.Fatalf("committed %s/%s: got %v, want %v", group, topic, got, want)
	}
	for i, o := range got {
		if int64(o.GetPartition()) != want[2*i] || o.GetOffset() != want[2*i+1] {
			t.Fatalf("committed %s/%s: got %v, want %v", group, topic, got, want)
		}
	}
}

// TestCommitAndCommittedAcrossSessionsAndGateways stores a group's offsets in
// one session and reads them in another, and on another gateway after a
// reconnect.
func TestCommitAndCommittedAcrossSessionsAndGateways(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(3, "t"))
	doc := testkit.ClusterYAML(k.ListenAddrs(), "    groups: ['web-*']\n", "")
	a := testkit.StartServer(t, doc, nil)
	c1 := a.Dial(t, "kafka")
	assertCommitted(t, c1, "web-1", "t", nil, 0, -1, 1, -1, 2, -1)
	if err := c1.Commit(ctx(t), "web-1", "t", offsetsOf(0, 5, 2, 7)...); err != nil {
		t.Fatal(err)
	}
	c2 := a.Dial(t, "kafka")
	assertCommitted(t, c2, "web-1", "t", nil, 0, 5, 1, -1, 2, 7)
	assertCommitted(t, c2, "web-1", "t", []int32{2}, 2, 7)
	assertCommitted(t, c2, "web-2", "t", []int32{0}, 0, -1)
	c1.Close()

	// A client that reconnects to another gateway resumes from there.
	c3 := testkit.StartServer(t, doc, nil).Dial(t, "kafka")
	assertCommitted(t, c3, "web-1", "t", nil, 0, 5, 1, -1, 2, 7)
	if err := c3.Commit(ctx(t), "web-1", "t", offsetsOf(0, 9)...); err != nil {
		t.Fatal(err)
	}
	assertCommitted(t, c2, "web-1", "t", []int32{0, 2}, 0, 9, 2, 7)

	for _, tc := range []struct {
		doc, group, want string
	}{
		{doc, "other", "group not allowed"},
		{doc, "", "group not allowed"},
		{testkit.ClusterYAML(k.ListenAddrs(), "", ""), "web-1", "group not allowed"},
		{testkit.ClusterYAML(k.ListenAddrs(), "    groups: ['web-*']\n    topics: [u]\n", ""), "web-1", "topic not allowed"},
	} {
		c := testkit.StartServer(t, tc.doc, nil).Dial(t, "kafka")
		err := c.Commit(ctx(t), tc.group, "t", offsetsOf(0, 1)...)
		if want := "failed to commit offset, topic: t, partition: 0, err: " + tc.want; err == nil || err.Error() != want {
			t.Errorf("commit %q: got %v, want %q", tc.group, err, want)
		}
		_, err = c.Committed(ctx(t), tc.group, "t", 1)
		if want := "failed to fetch committed offset, topic: t, partition: 1, err: " + tc.want; err == nil || err.Error() != want {
			t.Errorf("committed %q: got %v, want %q", tc.group, err, want)
		}
	}
	assertCommitted(t, c2, "web-1", "t", nil, 0, 9, 1, -1, 2, 7)
}

// seenRecords is every record the members of a group processed.
type seenRecords struct {
	mu    sync.Mutex
	seen  map[int32]map[int64]bool
	total int
	errs  []error
	more  chan struct{} // closed when total grows
}

func newSeenRecords() *seenRecords {
	return &seenRecords{seen: make(map[int32]map[int64]bool), more: make(chan struct{})}
}

func (s *seenRecords) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

// add notes one processed record; a record processed twice is an error.
func (s *seenRecords) add(member string, partition int32, offset int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[partition] == nil {
		s.seen[partition] = make(map[int64]bool)
	}
	if s.seen[partition][offset] {
		s.errs = append(s.errs, fmt.Errorf("%s: partition %d offset %d delivered twice", member, partition, offset))
		return
	}
	s.seen[partition][offset] = true
	s.total++
	close(s.more)
	s.more = make(chan struct{})
}

// await waits until n records were processed.
func (s *seenRecords) await(t *testing.T, n int) {
	t.Helper()
	for {
		s.mu.Lock()
		total, more, errs := s.total, s.more, slices.Clone(s.errs)
		s.mu.Unlock()
		if len(errs) > 0 {
			t.Fatal(errors.Join(errs...))
		}
		if total >= n {
			return
		}
		select {
		case <-more:
		case <-ctx(t).Done():
			t.Fatalf("%d records processed, want %d", total, n)
		}
	}
}

// groupMember is a client that is one member of a group subscription: it
// processes the records pushed to it, checks that each is of a partition it
// was assigned, and commits what it processed of revoked partitions.
type groupMember struct {
	name  string
	c     *client.Client
	group string
	topic string
	seen  *seenRecords

	mu        sync.Mutex
	leaving   bool // records are no longer processed
	assigned  map[int32]bool
	processed map[int32]int64 // the next offset, per assigned partition
	changed   chan struct{}   // closed when the assignment changes
	done      chan struct{}   // closed when Handle returns
}

// joinGroup makes the session of c a member of group, reading topic from
// the earliest offset where the group has committed none.
func joinGroup(t *testing.T, c *client.Client, name, group, topic string, seen *seenRecords) *groupMember {
	t.Helper()
	m := &groupMember{name: name, c: c, group: group, topic: topic, seen: seen,
		assigned: make(map[int32]bool), processed: make(map[int32]int64), changed: make(chan struct{}), done: make(chan struct{})}
	sub, err := m.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: topic, Group: group, Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	if len(sub.Starts) != 0 {
		t.Errorf("group subscription acknowledged with partitions %v", sub.Starts)
	}
	go func() {
		defer close(m.done)
		err := sub.Handle(context.Background(), client.GroupHandler{OnRecords: m.onRecords, OnAssignment: m.onAssignment})
		if err != nil && !errors.Is(err, client.ErrClosed) {
			seen.fail(fmt.Errorf("%s: %w", name, err))
		}
	}()
	return m
}

func (m *groupMember) onRecords(topic string, partition int32, msgs []*pb.KafkaMessage) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if topic != m.topic || !m.assigned[partition] {
		return fmt.Errorf("%s: records of %s/%d, which is not assigned to it", m.name, topic, partition)
	}
	if m.leaving {
		return nil // the next owner gets them, from the committed offsets
	}
	for _, msg := range msgs {
		m.seen.add(m.name, partition, msg.GetOffset())
		m.processed[partition] = msg.GetOffset() + 1
	}
	return nil
}

func (m *groupMember) onAssignment(a *pb.KafkaAssignment) error {
	m.mu.Lock()
	for _, p := range a.GetAssigned() {
		if m.assigned[p] {
			m.mu.Unlock()
			return fmt.Errorf("%s: partition %d assigned twice", m.name, p)
		}
		m.assigned[p] = true
	}
	var commit []*pb.KafkaPartitionOffset
	for _, p := range a.GetRevoked() {
		if next, ok := m.processed[p]; ok {
			commit = append(commit, &pb.KafkaPartitionOffset{Partition: p, Offset: next})
		}
		delete(m.assigned, p)
		delete(m.processed, p)
	}
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	if len(commit) == 0 {
		return nil
	}
	return m.c.Commit(context.Background(), m.group, m.topic, commit...)
}

// partitions returns the member's assignment.
func (m *groupMember) partitions() ([]int32, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ps []int32
	for p := range m.assigned {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps, m.changed
}

// leave stops processing, commits what the member processed and ends its
// session. Records may keep coming meanwhile: they are read and dropped.
func (m *groupMember) leave(t *testing.T) {
	t.Helper()
	m.mu.Lock()
	m.leaving = true
	var commit []*pb.KafkaPartitionOffset
	for p, next := range m.processed {
		commit = append(commit, &pb.KafkaPartitionOffset{Partition: p, Offset: next})
	}
	m.mu.Unlock()
	if len(commit) > 0 {
		if err := m.c.Commit(ctx(t), m.group, m.topic, commit...); err != nil {
			t.Fatal(err)
		}
	}
	m.c.Close()
	<-m.done
}

// awaitSplit waits until the members hold disjoint assignments of sizes
// that together cover partitions partitions evenly.
func awaitSplit(t *testing.T, partitions int, members ...*groupMember) {
	t.Helper()
	for {
		var waits []<-chan struct{}
		covered := map[int32]bool{}
		even := true
		for _, m := range members {
			ps, changed := m.partitions()
			waits = append(waits, changed)
			if len(ps) != partitions/len(members) {
				even = false
			}
			for _, p := range ps {
				covered[p] = true
			}
		}
		if even && len(covered) == partitions {
			return
		}
		cases := make(chan struct{})
		stop := make(chan struct{})
		for _, w := range waits {
			go func() {
				select {
				case <-w:
					select {
					case cases <- struct{}{}:
					case <-stop:
					}
				case <-stop:
				}
			}()
		}
		select {
		case <-cases:
			close(stop)
		case <-ctx(t).Done():
			close(stop)
			var got []string
			for _, m := range members {
				ps, _ := m.partitions()
				got = append(got, fmt.Sprintf("%s=%v", m.name, ps))
			}
			t.Fatalf("assignments did not settle: %v", got)
		}
	}
}

// producer writes numbered JSON records round-robin over a topic's
// partitions with franz-go's default (snappy) compression.
type producer struct {
	cl       *kgo.Client
	topic    string
	produced int
}

func (p *producer) produce(t *testing.T, n int) {
	t.Helper()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: p.topic, Value: []byte(fmt.Sprintf(`{"n":%d}`, p.produced+i))}
	}
	if err := p.cl.ProduceSync(ctx(t), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p.produced += n
}

// TestGroupMembersSplitPartitionsWithoutLossOrDuplicates runs two, then
// three sessions in one group over a 6-partition topic, then lets one leave,
// while records keep arriving: every record is processed exactly once, each
// by a member the partition was assigned to. The members commit what they
// processed when told of a revocation, and before leaving.
func TestGroupMembersSplitPartitionsWithoutLossOrDuplicates(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(6, "events"))
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "    groups: ['app']\n", ""), nil,
		kafka.ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond)))
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.ListenAddrs()...), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p := &producer{cl: cl, topic: "events"}
	seen := newSeenRecords()

	p.produce(t, 60)
	m1 := joinGroup(t, srv.Dial(t, "kafka"), "m1", "app", "events", seen)
	seen.await(t, 60)

	// Records keep arriving while members join.
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			recs := make([]*kgo.Record, 6)
			for i := range recs {
				recs[i] = &kgo.Record{Topic: "events", Value: []byte(`{"live":true}`)}
			}
			if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
				seen.fail(err)
				return
			}
			p.produced += len(recs)
		}
	}()
	m2 := joinGroup(t, srv.Dial(t, "kafka"), "m2", "app", "events", seen)
	awaitSplit(t, 6, m1, m2)
	m3 := joinGroup(t, srv.Dial(t, "kafka"), "m3", "app", "events", seen)
	awaitSplit(t, 6, m1, m2, m3)
	m1.leave(t)
	awaitSplit(t, 6, m2, m3)
	close(stop)
	<-stopped
	p.produce(t, 60)
	seen.await(t, p.produced)

	seen.mu.Lock()
	defer seen.mu.Unlock()
	if seen.total != p.produced {
		t.Fatalf("%d records processed, %d produced", seen.total, p.produced)
	}
	t.Logf("%d records over 3 members, 2 joins and 1 leave", p.produced)
}

// TestGroupSubscriptionStartsAtCommittedOffsets commits offsets without
// membership, then joins: records start there, and at the subscription's
// start where nothing is committed.
func TestGroupSubscriptionStartsAtCommittedOffsets(t *testing.T) {
	f := newFixture(t, "    groups: ['g']\n")
	for p := range int32(3) {
		testkit.Produce(t, f.kafka.ListenAddrs(), "t", p, testkit.Numbered(10))
	}
	if err := f.c.Commit(ctx(t), "g", "t", offsetsOf(0, 4, 1, 10)...); err != nil {
		t.Fatal(err)
	}
	sub, err := f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Group: "g", Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	first := map[int32]int64{}
	var assignment *pb.KafkaAssignment
	for len(first) < 2 {
		select {
		case resp := <-sub.C():
			if a := resp.GetKafkaAssignment(); a != nil {
				assignment = a
				continue
			}
			fr := resp.GetKafkaFetchResp()
			if fr == nil {
				t.Fatalf("push %v", resp)
			}
			if assignment == nil {
				t.Fatal("records before the assignment")
			}
			if _, ok := first[fr.GetPartition()]; !ok {
				first[fr.GetPartition()] = fr.GetMessages()[0].GetOffset()
			}
		case <-ctx(t).Done():
			t.Fatalf("first offsets so far: %v", first)
		}
	}
	if !slices.Equal(assignment.GetAssigned(), []int32{0, 1, 2}) || assignment.GetTopic() != "t" {
		t.Errorf("assignment %v", assignment)
	}
	if first[0] != 4 || first[2] != 0 {
		t.Errorf("first offsets %v, want 4 on partition 0 (committed) and 0 on 2 (earliest)", first)
	}
	if _, ok := first[1]; ok {
		t.Errorf("partition 1, committed at its end, pushed from %d", first[1])
	}
	// A group subscription takes no partitions, and the session is one
	// member of a group at most.
	_, err = f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Group: "g", Partitions: []int32{0}})
	if want := "failed to subscribe, topic: t, partition: -1, err: " + kafka.ErrGroupAssigns.Error(); err == nil || err.Error() != want {
		t.Errorf("group with partitions: %v", err)
	}
	_, err = f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Group: "g"})
	if want := "failed to subscribe, topic: t, partition: -1, err: " + kafka.ErrAlreadyMember.Error(); err == nil || err.Error() != want {
		t.Errorf("second membership: %v", err)
	}
}

// TestGroupMembershipLimitsAndLeaving checks a session's group limits, that
// a commit from outside a group with live members is refused while the
// member's own commit is taken, and that unsubscribing pushes the
// revocation before its reply and leaves the group.
func TestGroupMembershipLimitsAndLeaving(t *testing.T) {
	f := newFixture(t, "    groups: ['g*']\n")
	subs := make([]*client.Subscription, kafka.MaxGroupSubscriptions)
	for i := range subs {
		sub, err := f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Group: fmt.Sprintf("g%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		subs[i] = sub
	}
	_, err := f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Group: "g-more"})
	if want := "failed to subscribe, topic: t, partition: -1, err: " + kafka.ErrTooManyGroups.Error(); err == nil || err.Error() != want {
		t.Errorf("one group too many: %v", err)
	}

	// g0 has a live member: only the member may commit.
	var assigned *pb.KafkaAssignment
	select {
	case resp := <-subs[0].C():
		assigned = resp.GetKafkaAssignment()
	case <-ctx(t).Done():
	}
	if !slices.Equal(assigned.GetAssigned(), []int32{0, 1, 2}) {
		t.Fatalf("first push %v, want the assignment of every partition", assigned)
	}
	other := f.srv.Dial(t, "kafka")
	if err := other.Commit(ctx(t), "g0", "t", offsetsOf(0, 1)...); err == nil {
		t.Error("a commit from outside a group with a live member was taken")
	}
	if err := f.c.Commit(ctx(t), "g0", "t", offsetsOf(0, 1)...); err != nil {
		t.Errorf("the member's commit: %v", err)
	}
	assertCommitted(t, other, "g0", "t", []int32{0}, 0, 1)

	// Unsubscribing: the revocation comes before the reply, and the group
	// is left, so that commits without membership are taken again.
	resp, err := f.c.Do(ctx(t), &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaUnsubscribe{
		CmdKafkaUnsubscribe: &pb.CmdKafkaUnsubscribe{Subscription: subs[0].Sequence},
	}})
	if err != nil || resp.GetKafkaUnsubscribeResp() == nil {
		t.Fatalf("unsubscribe: %v, %v", resp, err)
	}
	select {
	case resp := <-subs[0].C():
		if !slices.Equal(resp.GetKafkaAssignment().GetRevoked(), []int32{0, 1, 2}) {
			t.Fatalf("push before the unsubscribe reply: %v, want the revocation", resp)
		}
	default:
		t.Fatal("no revocation before the unsubscribe reply")
	}
	if err := other.Commit(ctx(t), "g0", "t", offsetsOf(0, 2)...); err != nil {
		t.Errorf("commit without membership after the member left: %v", err)
	}
}

// A group member reads committed data only, as fetches and subscriptions
// do: records of an aborted transaction never reach it.
func TestGroupSubscriptionSkipsAbortedTransactions(t *testing.T) {
	f := newFixture(t, "    groups: ['g']\n")
	brokers := f.kafka.ListenAddrs()
	plain := newBatchProducer(t, brokers, "t", 0, kgo.SnappyCompression(), "plain")
	txn := newBatchProducer(t, brokers, "t", 0, kgo.SnappyCompression(), "txn", kgo.TransactionalID("group-txn"))
	plain.batch(3)
	if err := txn.cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	txn.batch(4)
	if err := txn.cl.EndTransaction(ctx(t), kgo.TryAbort); err != nil {
		t.Fatalf("abort: %v", err)
	}
	want := append(plain.batch(2), plain.batch(1)...)
	l := readLog(t, brokers, "t", 0, want[len(want)-1].offset)
	if len(l.records) != 6 {
		t.Fatalf("a read_committed read holds %d data records, want 6", len(l.records))
	}

	sub, err := f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Group: "g", Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	var got []*pb.KafkaMessage
	for len(got) < len(l.records) {
		select {
		case resp := <-sub.C():
			if fr := resp.GetKafkaFetchResp(); fr != nil && fr.GetPartition() == 0 {
				got = append(got, fr.GetMessages()...)
			} else if resp.GetErrorResp() != nil {
				t.Fatalf("push %v", resp)
			}
		case <-ctx(t).Done():
			t.Fatalf("%d of %d records before the deadline", len(got), len(l.records))
		}
	}
	if len(got) != len(l.records) {
		t.Fatalf("%d records pushed, the committed log holds %d", len(got), len(l.records))
	}
	for i, m := range got {
		if m.GetOffset() != l.records[i].Offset || string(m.GetValue()) != string(l.records[i].Value) {
			t.Fatalf("record %d: offset %d value %s; the committed log has offset %d value %s", i, m.GetOffset(), m.GetValue(), l.records[i].Offset, l.records[i].Value)
		}
	}
}
