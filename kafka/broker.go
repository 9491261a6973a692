package kafka

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// partitionInfo is what a command needs to know of a partition.
type partitionInfo struct {
	topicID     [16]byte
	leader      int32
	leaderEpoch int32 // -1 when the broker reports none
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
			return partitionInfo{topicID: t.TopicID, leader: p.Leader, leaderEpoch: p.LeaderEpoch}, nil
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
		// read_committed, as every read of the gateway: the latest offset
		// is the last stable one, so that a client starting there does not
		// skip a transaction still open.
		req.IsolationLevel = 1
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

// fetchWait asks the partition's leader for the records from offset on,
// waiting up to wait at the end of the log, decodes what out and a
// read-ahead need into the record cache, and adds the records to out.
// Records of transactions are read once committed (read_committed). The
// request names the topic's incarnation (its id) and the leader epoch
// metadata knows, so that a deposed or lagging leader is fenced instead of
// answering from a log that may be truncated; what it decodes is cached
// under that incarnation and epoch. pinned reads only the incarnation
// key.topicID: a subscription that began on a topic deleted and created
// again since gets ErrTopicNotFound, not the new topic's records.
func (k *Cluster) fetchWait(ctx context.Context, key cacheKey, pinned bool, offset int64, wait time.Duration, out *reply) error {
	topic, partition := key.topic, key.partition
	for attempt := 0; ; attempt++ {
		info, err := k.lookup(ctx, topic, partition, attempt > 0)
		if err != nil {
			return err
		}
		if pinned && info.topicID != key.topicID {
			if attempt == 0 {
				continue // cached metadata may be stale: look again
			}
			return ErrTopicNotFound
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
		rp.CurrentLeaderEpoch = info.leaderEpoch
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
		ck := cacheKey{key.readerKey, info.topicID}
		k.cache.trimBefore(ck, fp.LogStartOffset)
		if err := k.decodeFetched(ck, info.leaderEpoch, fp, offset, out); err != nil {
			return k.fetchCause(ctx, err)
		}
		end := fp.HighWatermark
		if fp.LastStableOffset >= 0 {
			end = fp.LastStableOffset // what read_committed reads
		}
		k.cache.sawLogEnd(ck, end)
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
		errors.Is(err, kerr.UnknownLeaderEpoch) ||
		errors.Is(err, kerr.LeaderNotAvailable) ||
		errors.Is(err, kerr.InconsistentTopicID)
}
