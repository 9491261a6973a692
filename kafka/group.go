package kafka

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/metrics"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// RevokeCommitTimeout bounds how long a revocation waits for the client to
// commit the records it was sent of the revoked partitions. The partitions'
// next owner starts at the committed offsets: a client that commits in time
// hands over without a record lost or delivered twice; one that does not is
// sent again what it did not commit (never less).
const RevokeCommitTimeout = 10 * time.Second

// MaxGroupSubscriptions bounds the group subscriptions of one session; each
// is a member of a consumer group with connections of its own.
const MaxGroupSubscriptions = 8

// Causes of refused group subscriptions.
var (
	ErrGroupAssigns       = errors.New("a group subscription takes no partitions or offsets: the group assigns them")
	ErrAlreadyMember      = errors.New("the session is a member of this group already")
	ErrTooManyGroups      = fmt.Errorf("more than %d group subscriptions in one session", MaxGroupSubscriptions)
	errMemberClientFailed = errors.New("cannot join the group")
)

// members are the group subscriptions of one session, by group id.
type members struct {
	mu      sync.Mutex
	byGroup map[string]*member
}

// find returns the session's member of group if it reads topic and has
// joined (has its client).
func (ms *members) find(group, topic string) *member {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m := ms.byGroup[group]; m != nil && m.topic == topic && m.cl != nil {
		return m
	}
	return nil
}

// activate gives m, reserved with add, its client.
func (ms *members) activate(m *member, cl *kgo.Client) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m.cl = cl
}

func (ms *members) add(m *member) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.byGroup[m.group] != nil {
		return ErrAlreadyMember
	}
	if len(ms.byGroup) >= MaxGroupSubscriptions {
		return ErrTooManyGroups
	}
	if ms.byGroup == nil {
		ms.byGroup = make(map[string]*member)
	}
	ms.byGroup[m.group] = m
	return nil
}

func (ms *members) remove(m *member) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.byGroup[m.group] == m {
		delete(ms.byGroup, m.group)
	}
}

// member is one group subscription: the session as one member of a consumer
// group, through a franz-go group client of its own. The group assigns the
// member partitions of the topic; records are pushed as for any
// subscription, starting at the group's committed offsets.
//
// The hand-over of a revoked partition: franz-go blocks rebalances while a
// poll's records are being pushed (BlockRebalanceOnPoll), so a revocation
// runs between pushes. It pushes kafka_assignment with the revoked
// partitions, then waits, at most RevokeCommitTimeout, until the client has
// committed (cmd_kafka_commit, which goes through this member) up to the
// offset after the last record it was pushed of each of them; only then may
// the group give them to their next owner, which starts at those offsets.
type member struct {
	k          *Cluster
	req        *pubsub.Request
	tally      *metrics.Tally // the session's, for its log line
	group      string
	topic      string
	maxRecords int
	view       View // the records the session sees
	// ctx is the subscription's context: done once it ends.
	ctx context.Context
	cl  *kgo.Client // set by members.activate, before the member is used

	mu sync.Mutex
	// delivered is the offset after the last record pushed, and committed
	// the offset the client last committed through this member, per
	// assigned partition.
	delivered map[int32]int64
	committed map[int32]int64
	changed   chan struct{} // closed when committed moves; made by a waiter
}

// subscribeGroup answers cmd_kafka_subscribe with a group: the session joins
// the group and is pushed kafka_assignment and the records of the partitions
// the group assigns it.
func (h *handlers) subscribeGroup(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
	cmd := req.Msg.GetCmdKafkaSubscribe()
	group, topic := cmd.GetGroup(), cmd.GetTopic()
	fail := func(cause error) (*pb.PubSubResp, error) {
		return nil, &CommandError{Op: opSubscribe, Topic: topic, Partition: -1, Cause: cause}
	}
	if err := h.checkGroupCommand(group, topic); err != nil {
		return fail(err)
	}
	if len(cmd.GetPartitions()) > 0 || len(cmd.GetOffsets()) > 0 {
		return fail(ErrGroupAssigns)
	}
	lctx, cancel := context.WithTimeout(ctx, h.k.cfg.RequestTimeout.Duration())
	defer cancel()
	if _, err := h.k.topicPartitions(lctx, topic); err != nil {
		return fail(err)
	}
	maxRecords := int(cmd.GetMaxRecords())
	if maxRecords <= 0 {
		maxRecords = DefaultMaxRecords
	}
	m := &member{k: h.k, req: req, tally: metrics.TallyFrom(ctx), group: group, topic: topic, maxRecords: maxRecords,
		view:      View{Scope: h.policy.ReadScope(topic), Filter: MatchFilter(cmd.GetFilter())},
		delivered: make(map[int32]int64), committed: make(map[int32]int64)}
	if err := h.members.add(m); err != nil {
		return fail(err)
	}
	sub := &subscription{}
	if err := h.subs.add(req.Sequence(), sub); err != nil {
		h.members.remove(m)
		return fail(err)
	}
	sctx, scancel := context.WithCancel(req.Context())
	sub.cancel = scancel
	m.ctx = sctx
	ack := &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaSubscribeResp{KafkaSubscribeResp: &pb.KafkaSubscribeResp{}}}
	if err := req.Push(sctx, ack); err != nil {
		h.subs.remove(req.Sequence())
		h.members.remove(m)
		scancel()
		return nil, nil
	}
	// The member joins only now, so that its first assignment follows the
	// acknowledgement.
	cl, err := h.k.newMemberClient(m, resetOffset(cmd))
	if err != nil {
		h.k.pool.log.Error("kafka: group member client", "group", group, "err", err)
		(&delivery{req: req, topic: topic, partition: -1}).fail(sctx, errMemberClientFailed)
		h.subs.remove(req.Sequence())
		h.members.remove(m)
		scancel()
		return nil, nil
	}
	h.members.activate(m, cl)
	sub.wg.Add(1)
	go m.run(sctx, &sub.wg, req.Hold(), func() { h.members.remove(m) })
	return nil, nil
}

// resetOffset is where a member starts in a partition the group has no
// committed offset for: the subscription's start (latest by default).
func resetOffset(cmd *pb.CmdKafkaSubscribe) kgo.Offset {
	switch start := cmd.GetStart().(type) {
	case *pb.CmdKafkaSubscribe_Offset:
		return kgo.NewOffset().At(start.Offset)
	case *pb.CmdKafkaSubscribe_Earliest:
		return kgo.NewOffset().AtStart()
	case *pb.CmdKafkaSubscribe_Timestamp:
		return kgo.NewOffset().AfterMilli(start.Timestamp)
	}
	return kgo.NewOffset().AtEnd()
}

// newMemberClient returns the franz-go client through which m is a member of
// its group; it starts joining at once.
func (k *Cluster) newMemberClient(m *member, reset kgo.Offset) (*kgo.Client, error) {
	return kgo.NewClient(append(slices.Clone(k.opts),
		kgo.WithHooks(&k.setup),
		kgo.ConsumerGroup(m.group),
		kgo.ConsumeTopics(m.topic),
		kgo.ConsumeResetOffset(reset),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), // as fetches and subscriptions read
		kgo.FetchMaxBytes(k.cfg.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(k.cfg.FetchMaxBytes),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			defer m.recoverCallback("assignment")
			m.assigned(assigned[m.topic])
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
			defer m.recoverCallback("revocation")
			m.revoked(revoked[m.topic], true)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			defer m.recoverCallback("loss")
			m.revoked(lost[m.topic], false)
		}),
	)...)
}

// recoverCallback logs a panic of a group callback, which franz-go runs in
// its own goroutine: inside Envoy an unrecovered panic would end the proxy.
func (m *member) recoverCallback(what string) {
	if p := recover(); p != nil {
		m.k.pool.log.Error("kafka: panic in group "+what, "group", m.group, "panic", p, "stack", string(debug.Stack()))
	}
}

// run pushes the records the member polls until ctx ends or the session
// stops taking pushes, then leaves the group (the revocation of what it
// held is pushed first) and calls forget.
func (m *member) run(ctx context.Context, wg *sync.WaitGroup, release func(), forget func()) {
	defer wg.Done()
	defer release()
	defer forget()
	defer func() {
		m.cl.AllowRebalance()
		m.cl.Close() // leaves the group at once, so its partitions move promptly
	}()
	defer func() {
		if p := recover(); p != nil {
			m.k.pool.log.Error("kafka: group subscription panic", "group", m.group, "panic", p, "stack", string(debug.Stack()))
			(&delivery{req: m.req, topic: m.topic, partition: -1}).fail(ctx, errors.New("internal error"))
		}
	}()
	for {
		fetches := m.cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		recreated := false
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			if topic == "" { // an error of the group, not of a partition
				topic = m.topic
			}
			cause := m.k.cause(ctx, err)
			if gone(err) {
				cause, recreated = ErrTopicNotFound, true
			}
			(&delivery{req: m.req, topic: topic, partition: partition}).fail(ctx, cause)
		})
		live := true
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if live && len(p.Records) > 0 {
				live = m.push(ctx, p.Partition, p.Records)
				m.k.lagged(p.HighWatermark, p.Records[len(p.Records)-1].Offset+1)
			}
		})
		if recreated {
			// The topic was deleted (and perhaps created again): franz-go
			// fails its old id until it is purged. The member forgets it
			// and joins the topic of that name anew. The revocation this
			// causes does not wait for the client to commit what it was
			// sent: those offsets were of the deleted topic, and a commit
			// of them could only skip records of the new one.
			m.mu.Lock()
			clear(m.delivered)
			m.mu.Unlock()
			m.cl.PurgeTopicsFromConsuming(m.topic)
			m.cl.AddConsumeTopics(m.topic)
		}
		m.cl.AllowRebalance()
		if !live {
			return
		}
	}
}

// push sends the records of one assigned partition that the session sees,
// the last push going on after the last of recs, and notes how far the
// client was sent (the offset after the last record it was pushed, which a
// revocation waits for it to commit); it reports whether the session still
// takes pushes. Records it does not see are not pushed: a poll of none
// pushes nothing, and the member's client goes on past them.
func (m *member) push(ctx context.Context, partition int32, recs []*kgo.Record) bool {
	next := recs[len(recs)-1].Offset + 1
	if !m.view.All() {
		if recs = visibleOf(m.view, recs); len(recs) == 0 {
			return true
		}
	}
	d := &delivery{k: m.k, req: m.req, tally: m.tally, topic: m.topic, partition: partition, cursor: recs[0].Offset, maxRecords: m.maxRecords}
	live := d.push(ctx, recs, next) // the member's own records: encoded for it alone
	m.mu.Lock()
	m.delivered[partition] = min(d.cursor, recs[len(recs)-1].Offset+1)
	m.mu.Unlock()
	return live
}

// assigned pushes the partitions the group gave the member, before any of
// their records.
func (m *member) assigned(partitions []int32) {
	if len(partitions) == 0 {
		return
	}
	for _, p := range partitions {
		m.tally.Touch(m.topic, p)
	}
	m.pushAssignment(&pb.KafkaAssignment{Topic: m.topic, Assigned: sorted(partitions)})
}

// revoked pushes the partitions the member loses and, when the group waits
// for it (a revocation, not a loss) and the subscription is live (not
// leaving the group), waits for the client to commit what it was sent of
// them.
func (m *member) revoked(partitions []int32, handOver bool) {
	if len(partitions) == 0 {
		return
	}
	partitions = sorted(partitions)
	m.pushAssignment(&pb.KafkaAssignment{Topic: m.topic, Revoked: partitions})
	if handOver && m.ctx.Err() == nil {
		m.awaitCommits(partitions, RevokeCommitTimeout)
	}
	m.mu.Lock()
	for _, p := range partitions {
		delete(m.delivered, p)
		delete(m.committed, p)
	}
	m.mu.Unlock()
}

// pushAssignment pushes a kafka_assignment of the subscription. It uses the
// session's context, not the subscription's: the revocation that leaving
// the group causes reaches the client before the unsubscribe reply.
func (m *member) pushAssignment(a *pb.KafkaAssignment) {
	m.req.Push(m.req.Context(), &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaAssignment{KafkaAssignment: a}})
}

// awaitCommits waits until the client has committed, for each partition, up
// to the offset after the last record it was pushed, or until timeout
// passes or the subscription ends.
func (m *member) awaitCommits(partitions []int32, timeout time.Duration) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		m.mu.Lock()
		done := true
		for _, p := range partitions {
			if d, ok := m.delivered[p]; ok && m.committed[p] < d {
				done = false
			}
		}
		if done {
			m.mu.Unlock()
			return
		}
		if m.changed == nil {
			m.changed = make(chan struct{})
		}
		changed := m.changed
		m.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			m.k.pool.log.Warn("kafka: group member handed partitions over without the client's commit", "group", m.group, "topic", m.topic, "partitions", partitions)
			return
		case <-m.ctx.Done():
			return
		}
	}
}

// commit commits offsets of topic as this member (its generation and member
// id), and notes them for a revocation that waits for them.
func (m *member) commit(ctx context.Context, topic string, offsets []*pb.KafkaPartitionOffset, metadata string) (*kmsg.OffsetCommitResponse, error) {
	var (
		resp *kmsg.OffsetCommitResponse
		err  error
	)
	withMetadata := kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			for j := range req.Topics[i].Partitions {
				req.Topics[i].Partitions[j].Metadata = &metadata
			}
		}
		return nil
	})
	m.cl.CommitOffsetsSync(withMetadata, epochOffsets(topic, offsets), func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, r *kmsg.OffsetCommitResponse, e error) {
		resp, err = r, e
	})
	if err != nil {
		return nil, m.k.cause(ctx, err)
	}
	failed := make(map[int32]bool)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				failed[p.Partition] = true
			}
		}
	}
	m.mu.Lock()
	for _, o := range offsets {
		if !failed[o.GetPartition()] {
			m.committed[o.GetPartition()] = o.GetOffset()
		}
	}
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
	m.mu.Unlock()
	return resp, nil
}

// sorted returns a sorted copy of partitions.
func sorted(partitions []int32) []int32 {
	s := slices.Clone(partitions)
	slices.Sort(s)
	return s
}
