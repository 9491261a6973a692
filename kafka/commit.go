package kafka

import (
	"context"
	"errors"
	"slices"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

const (
	opCommit    = "commit offset"
	opCommitted = "fetch committed offset"
)

// ErrGroupNotAllowed is the cause when a consumer group id is outside the
// session's allow-lists.
var ErrGroupNotAllowed = errors.New("group not allowed")

// commit answers cmd_kafka_commit: it stores the group's offsets for
// partitions of a topic (Kafka's OffsetCommit). When the session is a member
// of the group (a group subscription), the commit is the member's, so that
// the group accepts it during a rebalance and a revocation waiting for it
// ends; otherwise it is a commit without membership, which Kafka accepts
// while the group has no live members.
func (h *handlers) commit(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
	cmd := req.Msg.GetCmdKafkaCommit()
	group, topic, offsets := cmd.GetGroup(), cmd.GetTopic(), cmd.GetOffsets()
	first := int32(-1)
	if len(offsets) > 0 {
		first = offsets[0].GetPartition()
	}
	fail := func(p int32, cause error) (*pb.PubSubResp, error) {
		return nil, &CommandError{Op: opCommit, Topic: topic, Partition: p, Cause: cause}
	}
	if err := h.checkGroupCommand(group, topic); err != nil {
		return fail(first, err)
	}
	if len(offsets) == 0 {
		return fail(first, errors.New("no offsets"))
	}
	ctx, cancel := context.WithTimeout(ctx, h.k.cfg.RequestTimeout.Duration())
	defer cancel()
	var (
		resp *kmsg.OffsetCommitResponse
		err  error
	)
	if m := h.members.find(group, topic); m != nil {
		resp, err = m.commit(ctx, topic, offsets, cmd.GetMetadata())
	} else {
		resp, err = h.k.commitWithoutMembership(ctx, group, topic, offsets, cmd.GetMetadata())
	}
	if err != nil {
		return fail(first, err)
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fail(p.Partition, h.k.cause(ctx, err))
			}
		}
	}
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaCommitResp{KafkaCommitResp: &pb.KafkaCommitResp{}}}, nil
}

// checkGroupCommand applies the policy to a command naming a group and a
// topic it reads.
func (h *handlers) checkGroupCommand(group, topic string) error {
	if err := h.policy.checkRead(topic); err != nil {
		return err
	}
	return h.policy.checkGroup(group)
}

// commitWithoutMembership sends an OffsetCommit as a client outside the
// group (generation -1, no member id).
func (k *Cluster) commitWithoutMembership(ctx context.Context, group, topic string, offsets []*pb.KafkaPartitionOffset, metadata string) (*kmsg.OffsetCommitResponse, error) {
	// Newer versions of the request name the topic by its id.
	info, err := k.lookup(ctx, topic, offsets[0].GetPartition(), false)
	if err != nil {
		return nil, err
	}
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = group
	req.Generation = -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rt.TopicID = info.topicID
	for _, o := range offsets {
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition = o.GetPartition()
		rp.Offset = o.GetOffset()
		rp.LeaderEpoch = -1
		rp.Metadata = &metadata
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = []kmsg.OffsetCommitRequestTopic{rt}
	resp, err := req.RequestWith(ctx, k.cl)
	if err != nil {
		return nil, k.cause(ctx, err)
	}
	return resp, nil
}

// epochOffsets converts protocol offsets of topic for a member's commit.
func epochOffsets(topic string, offsets []*pb.KafkaPartitionOffset) map[string]map[int32]kgo.EpochOffset {
	ps := make(map[int32]kgo.EpochOffset, len(offsets))
	for _, o := range offsets {
		ps[o.GetPartition()] = kgo.EpochOffset{Epoch: -1, Offset: o.GetOffset()}
	}
	return map[string]map[int32]kgo.EpochOffset{topic: ps}
}

// committed answers cmd_kafka_committed with the group's committed offsets
// of the requested partitions (all of the topic's when none are named), -1
// where the group has none.
func (h *handlers) committed(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
	cmd := req.Msg.GetCmdKafkaCommitted()
	group, topic, partitions := cmd.GetGroup(), cmd.GetTopic(), slices.Clone(cmd.GetPartitions())
	first := int32(-1)
	if len(partitions) > 0 {
		first = partitions[0]
	}
	fail := func(p int32, cause error) (*pb.PubSubResp, error) {
		return nil, &CommandError{Op: opCommitted, Topic: topic, Partition: p, Cause: cause}
	}
	if err := h.checkGroupCommand(group, topic); err != nil {
		return fail(first, err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.k.cfg.RequestTimeout.Duration())
	defer cancel()
	if len(partitions) == 0 {
		all, err := h.k.topicPartitions(ctx, topic)
		if err != nil {
			return fail(first, err)
		}
		partitions = all
	}
	slices.Sort(partitions)
	partitions = slices.Compact(partitions)
	got, err := h.k.fetchCommitted(ctx, group, topic, partitions)
	if err != nil {
		return fail(first, err)
	}
	offsets := make([]*pb.KafkaPartitionOffset, len(partitions))
	for i, p := range partitions {
		off, ok := got[p]
		if !ok {
			off = -1
		}
		offsets[i] = &pb.KafkaPartitionOffset{Partition: p, Offset: off}
	}
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaCommittedResp{
		KafkaCommittedResp: &pb.KafkaCommittedResp{Offsets: offsets},
	}}, nil
}

// fetchCommitted returns group's committed offsets of topic's partitions
// (Kafka's OffsetFetch); a partition without one is absent or -1.
func (k *Cluster) fetchCommitted(ctx context.Context, group, topic string, partitions []int32) (map[int32]int64, error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	rt.Partitions = partitions
	req.Topics = []kmsg.OffsetFetchRequestTopic{rt}
	resp, err := req.RequestWith(ctx, k.cl)
	if err != nil {
		return nil, k.cause(ctx, err)
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		if errors.Is(err, kerr.GroupIDNotFound) {
			return nil, nil // a group that never committed
		}
		return nil, k.cause(ctx, err)
	}
	got := make(map[int32]int64, len(partitions))
	for _, t := range resp.Topics {
		if t.Topic != topic {
			continue
		}
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, k.cause(ctx, err)
			}
			got[p.Partition] = p.Offset
		}
	}
	return got, nil
}
