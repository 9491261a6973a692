package client

import (
	"context"
	"fmt"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// Produce writes records to topic, all to partition, or each where Kafka's
// default partitioner puts its key when partition is -1. It returns once
// Kafka has acknowledged every record, with each record's partition and
// offset in order.
func (c *Client) Produce(ctx context.Context, topic string, partition int32, records ...*pb.KafkaRecord) ([]*pb.KafkaPartitionOffset, error) {
	resp, err := c.Do(ctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaProduce{CmdKafkaProduce: &pb.CmdKafkaProduce{
		Topic: topic, Partition: partition, Records: records,
	}}})
	if err != nil {
		return nil, err
	}
	if resp.GetKafkaProduceResp() == nil {
		return nil, fmt.Errorf("client: unexpected reply %v", resp)
	}
	return resp.GetKafkaProduceResp().GetOffsets(), nil
}

// Commit stores group's offsets for partitions of topic: each the offset of
// the next record to read. A member of the group (a group subscription of
// this connection) commits as that member.
func (c *Client) Commit(ctx context.Context, group, topic string, offsets ...*pb.KafkaPartitionOffset) error {
	resp, err := c.Do(ctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaCommit{CmdKafkaCommit: &pb.CmdKafkaCommit{
		Group: group, Topic: topic, Offsets: offsets,
	}}})
	if err != nil {
		return err
	}
	if resp.GetKafkaCommitResp() == nil {
		return fmt.Errorf("client: unexpected reply %v", resp)
	}
	return nil
}

// Committed returns group's committed offsets of partitions of topic (all
// of them when none are named), -1 where the group has none.
func (c *Client) Committed(ctx context.Context, group, topic string, partitions ...int32) ([]*pb.KafkaPartitionOffset, error) {
	resp, err := c.Do(ctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaCommitted{CmdKafkaCommitted: &pb.CmdKafkaCommitted{
		Group: group, Topic: topic, Partitions: partitions,
	}}})
	if err != nil {
		return nil, err
	}
	if resp.GetKafkaCommittedResp() == nil {
		return nil, fmt.Errorf("client: unexpected reply %v", resp)
	}
	return resp.GetKafkaCommittedResp().GetOffsets(), nil
}

// GroupHandler receives the pushes of a subscription, one at a time and in
// order, in the goroutine that called Handle: it may call the client (for
// example Commit) from its callbacks, since the pushes that follow wait in
// the subscription's queue while the connection reads the replies.
type GroupHandler struct {
	// OnRecords receives records of one partition.
	OnRecords func(topic string, partition int32, msgs []*pb.KafkaMessage) error
	// OnAssignment receives the partitions the group assigns, before their
	// first records, and those it revokes, after their last records. A
	// member that commits what it processed of revoked partitions here
	// hands them over without a record lost or delivered twice.
	OnAssignment func(a *pb.KafkaAssignment) error
}

// Handle reads the subscription's pushes and calls h for each, until the
// subscription ends (nil), a callback fails (its error), ctx is done, or the
// server pushes an error (a *ServerError).
func (s *Subscription) Handle(ctx context.Context, h GroupHandler) error {
	for {
		var resp *pb.PubSubResp
		select {
		case r, ok := <-s.ch:
			if !ok {
				return nil
			}
			resp = r
		case <-ctx.Done():
			return ctx.Err()
		}
		var err error
		switch {
		case resp.GetErrorResp() != nil:
			e := resp.GetErrorResp()
			err = &ServerError{Code: e.GetCode(), Message: e.GetMessage()}
		case resp.GetKafkaAssignment() != nil && h.OnAssignment != nil:
			err = h.OnAssignment(resp.GetKafkaAssignment())
		case resp.GetKafkaFetchResp() != nil && h.OnRecords != nil:
			f := resp.GetKafkaFetchResp()
			err = h.OnRecords(f.GetTopic(), f.GetPartition(), f.GetMessages())
		}
		if err != nil {
			return err
		}
	}
}
