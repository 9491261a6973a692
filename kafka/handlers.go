package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// Register binds the Kafka commands of mux to the shared client k, for a
// session that may do what policy allows.
func Register(mux *pubsub.Mux, k *Cluster, policy Policy) {
	h := &handlers{k: k, policy: policy}
	mux.On(pubsub.CmdKafkaListOffset, pubsub.HandlerFunc(h.listOffset))
	mux.On(pubsub.CmdKafkaFetch, pubsub.HandlerFunc(h.fetch))
	mux.On(pubsub.CmdKafkaSubscribe, pubsub.HandlerFunc(h.subscribe))
	mux.On(pubsub.CmdKafkaUnsubscribe, pubsub.HandlerFunc(h.unsubscribe))
	mux.On(pubsub.CmdKafkaProduce, pubsub.HandlerFunc(h.produce))
	mux.On(pubsub.CmdKafkaCommit, pubsub.HandlerFunc(h.commit))
	mux.On(pubsub.CmdKafkaCommitted, pubsub.HandlerFunc(h.committed))
}

// handlers serve one session's Kafka commands.
type handlers struct {
	k       *Cluster
	policy  Policy
	subs    subscriptions
	members members
	writes  produceState
}

// Causes of command failures that are not Kafka error codes.
var (
	ErrTopicNotAllowed   = errors.New("topic not allowed")
	ErrTopicNotFound     = errors.New("not found topic")
	ErrPartitionNotFound = errors.New("not found partition")
	ErrBrokerUnreachable = errors.New("broker unreachable")
	ErrAuthentication    = errors.New("authentication failed")
	ErrTimeout           = errors.New("request timed out")
)

// CommandError is a failed Kafka command. Its text is in APISIX's format,
// "failed to fetch message, topic: T, partition: P, err: CAUSE", so that
// clients written for APISIX read it unchanged.
type CommandError struct {
	Op        string // e.g. "list offset", "fetch message", "produce message"
	Topic     string
	Partition int32
	Cause     error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("failed to %s, topic: %s, partition: %d, err: %s", e.Op, e.Topic, e.Partition, e.Cause)
}

// Unwrap returns the cause.
func (e *CommandError) Unwrap() error { return e.Cause }

const (
	opListOffset = "list offset"
	opFetch      = "fetch message"
)

func (h *handlers) listOffset(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
	cmd := req.Msg.GetCmdKafkaListOffset()
	topic, partition := cmd.GetTopic(), cmd.GetPartition()
	fail := func(cause error) (*pb.PubSubResp, error) {
		return nil, &CommandError{Op: opListOffset, Topic: topic, Partition: partition, Cause: cause}
	}
	if err := h.policy.checkRead(topic); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.k.cfg.RequestTimeout.Duration())
	defer cancel()
	offset, err := h.k.ListOffset(ctx, topic, partition, cmd.GetTimestamp())
	if err != nil {
		return fail(err)
	}
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaListOffsetResp{
		KafkaListOffsetResp: &pb.KafkaListOffsetResp{Offset: offset},
	}}, nil
}

func (h *handlers) fetch(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
	cmd := req.Msg.GetCmdKafkaFetch()
	topic, partition := cmd.GetTopic(), cmd.GetPartition()
	if err := h.policy.checkRead(topic); err != nil {
		return nil, &CommandError{Op: opFetch, Topic: topic, Partition: partition, Cause: err}
	}
	ctx, cancel := context.WithTimeout(ctx, h.k.cfg.RequestTimeout.Duration())
	defer cancel()
	records, shared, err := h.k.fetchShared(recycled(ctx), topic, partition, cmd.GetOffset())
	if err != nil {
		return nil, &CommandError{Op: opFetch, Topic: topic, Partition: partition, Cause: err}
	}
	if !shared {
		// The records go back to their pool once the reply is written;
		// records of a shared window stay where they are.
		req.AfterReply(func() { recycleRecords(records) })
	}
	slab := messageSlabs.Get().(*messageSlab)
	req.AfterReply(slab.release)
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{
		KafkaFetchResp: &pb.KafkaFetchResp{Messages: slab.messagesOf(records)},
	}}, nil
}

// fetchShared serves a fetch from the window of a shared reader when one
// covers offset (shared reports that: those records belong to the window and
// must not be recycled), and from Kafka otherwise. It never makes the broker
// wait: a fetch at the end of the log waits on a shared reader instead, so
// that one session's wait does not hold up the fetches queued behind it on
// the client's connection. When nothing arrives, the broker has the last
// word, which also reports a broker that went away.
func (k *Cluster) fetchShared(ctx context.Context, topic string, partition int32, offset int64) (recs []*kgo.Record, shared bool, err error) {
	r := k.runningReader(topic, partition)
	if r == nil || !r.covers(offset) {
		recs, err = k.fetchWait(ctx, topic, partition, offset, 0)
		if err != nil || len(recs) > 0 {
			return recs, false, err
		}
		if r, err = k.leaseReader(ctx, topic, partition); err != nil || !r.covers(offset) {
			return nil, false, nil // the empty answer stands
		}
	}
	if recs, ok := r.waitRead(ctx, offset, int(k.cfg.FetchMaxBytes), k.cfg.FetchMaxWait.Duration()); ok && len(recs) > 0 {
		return recs, true, nil
	}
	recs, err = k.fetchWait(ctx, topic, partition, offset, 0)
	return recs, false, err
}

// messagesOf converts records to protocol messages in a slab of their own
// (keys, values and headers are shared, not copied).
func messagesOf(records []*kgo.Record) []*pb.KafkaMessage {
	return new(messageSlab).messagesOf(records)
}

// messageSlab holds the protocol messages of one reply in a few slices that
// can be reused for the next reply once this one is written.
type messageSlab struct {
	msgs       []*pb.KafkaMessage
	backing    []pb.KafkaMessage
	headerPtrs []*pb.KafkaHeader
	headers    []pb.KafkaHeader
}

// messagesOf converts records to protocol messages in s, growing its slices
// when they are too short (keys, values and headers are shared, not copied).
func (s *messageSlab) messagesOf(records []*kgo.Record) []*pb.KafkaMessage {
	headers := 0
	for _, r := range records {
		headers += len(r.Headers)
	}
	s.msgs = resize(s.msgs, len(records))
	s.backing = resize(s.backing, len(records))
	s.headerPtrs = resize(s.headerPtrs, headers)
	s.headers = resize(s.headers, headers)
	headers = 0
	for i, r := range records {
		m := &s.backing[i]
		m.Offset = r.Offset
		m.Timestamp = r.Timestamp.UnixMilli()
		m.Key = r.Key
		m.Value = r.Value
		if n := len(r.Headers); n > 0 {
			m.Headers = s.headerPtrs[headers : headers+n : headers+n]
			for j, h := range r.Headers {
				hs := &s.headers[headers+j]
				hs.Key, hs.Value = h.Key, h.Value
				m.Headers[j] = hs
			}
			headers += n
		}
		s.msgs[i] = m
	}
	return s.msgs
}

// resize returns s with length n, reallocated only when it is too short.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// partitionInfo is what a command needs to know of a partition.
type partitionInfo struct {
	topicID [16]byte
	leader  int32
}

// lookup finds topic/partition in (cached) metadata. fresh bypasses the
// cache, after a broker said the cached view is stale.
func (k *Cluster) lookup(ctx context.Context, topic string, partition int32, fresh bool) (partitionInfo, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = []kmsg.MetadataRequestTopic{rt}
	var (
		resp *kmsg.MetadataResponse
		err  error
	)
	if fresh {
		var r kmsg.Response
		r, err = k.cl.Request(ctx, req)
		if err == nil {
			resp = r.(*kmsg.MetadataResponse)
		}
	} else {
		resp, err = k.cl.RequestCachedMetadata(ctx, req, 0)
	}
	if err != nil {
		return partitionInfo{}, k.cause(ctx, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return partitionInfo{}, ErrTopicNotFound
			}
			return partitionInfo{}, k.cause(ctx, err)
		}
		for _, p := range t.Partitions {
			if p.Partition != partition {
				continue
			}
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil && p.Leader < 0 {
				return partitionInfo{}, k.cause(ctx, err)
			}
			return partitionInfo{topicID: t.TopicID, leader: p.Leader}, nil
		}
		return partitionInfo{}, ErrPartitionNotFound
	}
	return partitionInfo{}, ErrTopicNotFound
}

// ListOffset returns the offset of topic/partition for timestamp: -2 the
// earliest, -1 the latest (the next offset to be written), otherwise the
// first offset whose record timestamp is at or after timestamp (ms), or -1
// when there is none.
func (k *Cluster) ListOffset(ctx context.Context, topic string, partition int32, timestamp int64) (int64, error) {
	for attempt := 0; ; attempt++ {
		if _, err := k.lookup(ctx, topic, partition, attempt > 0); err != nil {
			return 0, err
		}
		req := kmsg.NewPtrListOffsetsRequest()
		req.ReplicaID = -1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = partition
		rp.Timestamp = timestamp
		rt.Partitions = []kmsg.ListOffsetsRequestTopicPartition{rp}
		req.Topics = []kmsg.ListOffsetsRequestTopic{rt}
		r, err := k.cl.Request(ctx, req)
		if err != nil {
			return 0, k.cause(ctx, err)
		}
		resp := r.(*kmsg.ListOffsetsResponse)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return 0, fmt.Errorf("malformed ListOffsets response")
		}
		p := resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			if attempt == 0 && stale(err) {
				continue
			}
			return 0, k.cause(ctx, err)
		}
		if resp.Version == 0 {
			if len(p.OldStyleOffsets) == 0 {
				return -1, nil
			}
			return p.OldStyleOffsets[0], nil
		}
		return p.Offset, nil
	}
}

// Fetch returns the records of topic/partition from offset on, as many as
// one fetch of the cluster's byte limit returns. The first record returned
// is the one at offset; at the end of the log the result is empty after at
// most the cluster's fetch wait.
func (k *Cluster) Fetch(ctx context.Context, topic string, partition int32, offset int64) ([]*kgo.Record, error) {
	return k.fetchWait(ctx, topic, partition, offset, k.cfg.FetchMaxWait.Duration())
}

// fetchWait is Fetch with the broker's wait at the end of the log.
func (k *Cluster) fetchWait(ctx context.Context, topic string, partition int32, offset int64, wait time.Duration) ([]*kgo.Record, error) {
	for attempt := 0; ; attempt++ {
		info, err := k.lookup(ctx, topic, partition, attempt > 0)
		if err != nil {
			return nil, err
		}
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = int32(wait.Milliseconds())
		req.MinBytes = 1
		req.MaxBytes = k.cfg.FetchMaxBytes
		req.SessionEpoch = -1
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = topic
		rt.TopicID = info.topicID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition = partition
		rp.FetchOffset = offset
		rp.PartitionMaxBytes = k.cfg.FetchMaxBytes
		rt.Partitions = []kmsg.FetchRequestTopicPartition{rp}
		req.Topics = []kmsg.FetchRequestTopic{rt}
		r, err := k.cl.Broker(int(info.leader)).Request(ctx, req)
		if err != nil {
			if attempt == 0 && ctx.Err() == nil {
				continue // the leader may have moved or gone: look again
			}
			return nil, k.cause(ctx, err)
		}
		resp := r.(*kmsg.FetchResponse)
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return nil, k.cause(ctx, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return nil, fmt.Errorf("malformed Fetch response")
		}
		fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			Offset:    offset,
			Topic:     topic,
			Partition: partition,
			Pools:     fetchPools(ctx),
		}, &resp.Topics[0].Partitions[0], decompressor, nil)
		if fp.Err != nil {
			if attempt == 0 && stale(fp.Err) {
				continue
			}
			return nil, k.cause(ctx, fp.Err)
		}
		// Brokers return whole batches; keep the reply within the limit.
		return fp.Records[:limitRecords(fp.Records, len(fp.Records), int(k.cfg.FetchMaxBytes))], nil
	}
}

var decompressor = kgo.DefaultDecompressor()

// stale reports whether err means the cached metadata is out of date, so a
// fresh lookup and one retry may succeed.
func stale(err error) bool {
	return errors.Is(err, kerr.NotLeaderForPartition) ||
		errors.Is(err, kerr.UnknownTopicOrPartition) ||
		errors.Is(err, kerr.UnknownTopicID) ||
		errors.Is(err, kerr.FencedLeaderEpoch) ||
		errors.Is(err, kerr.LeaderNotAvailable) ||
		errors.Is(err, kerr.InconsistentTopicID)
}
