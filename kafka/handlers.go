package kafka

import (
	"context"
	"errors"
	"fmt"
	"math"
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
	h := &handlers{k: k, policy: policy, lane: k.turns.newLane()}
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
	lane    *brokerLane // the session's turn at the brokers
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
	ctx, cancel := context.WithTimeout(withLane(ctx, h.lane), h.k.cfg.RequestTimeout.Duration())
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
	// A broker fetch reserves its bytes in the reply budget before it is
	// sent (a wait at the end of the log holds none).
	ctx, cancel := context.WithTimeout(withReply(withLane(ctx, h.lane), req), h.k.cfg.RequestTimeout.Duration())
	defer cancel()
	slab := messageSlabs.Get().(*messageSlab)
	out := newReply(cmd.GetOffset(), DefaultMaxRecords, int(h.k.cfg.FetchMaxBytes))
	out.records = slab.records[:0]
	err := h.k.fetchReply(ctx, topic, partition, out)
	slab.records = out.records
	if err != nil {
		slab.release()
		return nil, &CommandError{Op: opFetch, Topic: topic, Partition: partition, Cause: err}
	}
	// Records of the cache are in memory already; the reply built of
	// them is not, until its bytes are reserved.
	if err := req.Reserve(ctx, recordsBytes(out.records)); err != nil {
		slab.release()
		return nil, &CommandError{Op: opFetch, Topic: topic, Partition: partition, Cause: h.k.cause(ctx, err)}
	}
	req.AfterReply(slab.release)
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{
		KafkaFetchResp: &pb.KafkaFetchResp{Messages: slab.messagesOf(out.records), NextOffset: out.next},
	}}, nil
}

// fetchReply answers a fetch at out.next into out, from the record cache, or
// from Kafka where the cache does not hold the offset. It never makes the
// broker wait: at the end of the log it waits on the partition's shared
// reader, so that one session's wait does not hold up the fetches queued
// behind it on the client's connection. When nothing arrives, the broker
// has the last word, which also reports a broker that went away.
func (k *Cluster) fetchReply(ctx context.Context, topic string, partition int32, out *reply) error {
	waited := k.waitAtTail(ctx, topic, partition, out.next)
	if err := k.readAt(ctx, topic, partition, out); err != nil || len(out.records) > 0 || waited {
		return err
	}
	r, err := k.leaseReader(ctx, topic, partition)
	if err != nil {
		return nil // the empty answer stands
	}
	changed, _, _ := r.state()
	if k.cache.read(readerKey{topic, partition}, out.next, out) && len(out.records) > 0 {
		return nil
	}
	if !waitChange(ctx, changed, k.cfg.FetchMaxWait.Duration()) {
		return nil
	}
	return k.readAt(ctx, topic, partition, out)
}

// waitAtTail waits, up to the cluster's fetch wait, when the partition's
// shared reader runs and sees the log end at offset: a client polling the
// end of the log then waits for the reader's next records instead of
// asking the broker on every poll. It reports whether it waited; the
// broker still has the last word after the wait.
func (k *Cluster) waitAtTail(ctx context.Context, topic string, partition int32, offset int64) bool {
	r := k.runningReader(topic, partition)
	if r == nil {
		return false
	}
	changed, end, err := r.state()
	if err != nil || offset != end || k.cache.holds(readerKey{topic, partition}, offset) {
		return false
	}
	waitChange(ctx, changed, k.cfg.FetchMaxWait.Duration())
	return true
}

// readAt reads topic/partition from out.next on into out: from the record
// cache while it holds the offsets, else from Kafka without waiting. The
// first record is the one at out.next, unless that offset holds no data
// record: a read that would add no record but moved past such offsets goes
// on from there. Then out.next is the offset to ask for next.
func (k *Cluster) readAt(ctx context.Context, topic string, partition int32, out *reply) error {
	info, err := k.lookup(ctx, topic, partition, false)
	if err != nil {
		return err
	}
	key := readerKey{topic, partition}
	k.cache.bind(key, info.topicID)
	if k.cache.holds(key, out.next) {
		if err := k.confirmCached(ctx, key); err != nil {
			return err
		}
	}
	for {
		at := out.next
		if err := k.read(ctx, key, at, out); err != nil {
			return err
		}
		if len(out.records) > 0 || out.next == at {
			return nil
		}
	}
}

// read adds to out the records of key from offset on: from the record cache
// if it holds offset, else from Kafka without waiting. A fetch of the same
// offset that runs already is waited for, up to the cluster's fetch wait
// (its session may wait for reply budget), and read from the cache.
func (k *Cluster) read(ctx context.Context, key readerKey, offset int64, out *reply) error {
	if k.cache.read(key, offset, out) {
		return nil
	}
	done, first := k.fetching.begin(key, offset)
	if !first {
		if !waitChange(ctx, done, k.cfg.FetchMaxWait.Duration()) {
			return k.cause(ctx, ctx.Err())
		}
		if k.cache.read(key, offset, out) {
			return nil
		}
		return k.fetchWait(ctx, key, offset, 0, out) // it failed, is slow, or its records are gone
	}
	defer k.fetching.end(key, offset)
	if k.cache.read(key, offset, out) { // a fetch that ended since the first look
		return nil
	}
	return k.fetchWait(ctx, key, offset, 0, out)
}

// messagesOf converts records to protocol messages in a slab of their own
// (keys, values and headers are shared, not copied).
func messagesOf(records []*kgo.Record) []*pb.KafkaMessage {
	return new(messageSlab).messagesOf(records)
}

// messageSlab holds the protocol messages of one reply in a few slices that
// can be reused for the next reply once this one is written.
type messageSlab struct {
	records    []*kgo.Record // the reply's records, while it is built
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
		r, err := k.brokerRequest(ctx, -1, req)
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
// is the one at offset, unless offset holds no data record (compacted away,
// a control record, an aborted transaction): then it is the first data
// record after it. At the end of the log the result is empty after at most
// the cluster's fetch wait.
func (k *Cluster) Fetch(ctx context.Context, topic string, partition int32, offset int64) ([]*kgo.Record, error) {
	out := newReply(offset, DefaultMaxRecords, int(k.cfg.FetchMaxBytes))
	if err := k.readAt(ctx, topic, partition, out); err != nil || len(out.records) > 0 {
		return out.records, err
	}
	if err := k.fetchWait(ctx, readerKey{topic, partition}, out.next, k.cfg.FetchMaxWait.Duration(), out); err != nil {
		return nil, err
	}
	return out.records, nil
}

// fetchWait asks the partition's leader for the records from offset on,
// waiting up to wait at the end of the log, decodes what out and a
// read-ahead need into the record cache, and adds the records to out.
// Records of transactions are read once committed (read_committed).
func (k *Cluster) fetchWait(ctx context.Context, key readerKey, offset int64, wait time.Duration, out *reply) error {
	topic, partition := key.topic, key.partition
	for attempt := 0; ; attempt++ {
		info, err := k.lookup(ctx, topic, partition, attempt > 0)
		if err != nil {
			return err
		}
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = int32(wait.Milliseconds())
		req.MinBytes = 1
		// The partition's bound limits the answer; the request's is left
		// open (a broker caps it with its own fetch.max.bytes), as kfake
		// leaves out the aborted transactions of a partition that meets it.
		req.MaxBytes = math.MaxInt32
		req.IsolationLevel = 1
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
		r, err := k.brokerRequest(ctx, info.leader, req)
		if err != nil {
			if attempt == 0 && ctx.Err() == nil {
				continue // the leader may have moved or gone: look again
			}
			return k.cause(ctx, err)
		}
		resp := r.(*kmsg.FetchResponse)
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return k.cause(ctx, err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			return fmt.Errorf("malformed Fetch response")
		}
		fp := &resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(fp.ErrorCode); err != nil {
			if attempt == 0 && stale(err) {
				continue
			}
			return k.cause(ctx, err)
		}
		k.cache.bind(key, info.topicID)
		k.cache.trimBefore(key, fp.LogStartOffset)
		if err := k.decodeFetched(key, info.topicID, fp, offset, out); err != nil {
			return k.cause(ctx, err)
		}
		return nil
	}
}

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

// recordsBytes is the size of recs' keys, values and headers.
func recordsBytes(recs []*kgo.Record) int {
	n := 0
	for _, r := range recs {
		n += recordBytes(r)
	}
	return n
}
