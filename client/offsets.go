package client

import (
	"context"
	"errors"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// LatestOffsets returns the latest offset (the next one to be written) of
// every partition of topic, in partition order. The protocol has no
// metadata command, so it subscribes to every partition at the latest
// offsets and ends that subscription at once; nothing is delivered.
func (c *Client) LatestOffsets(ctx context.Context, topic string) ([]*pb.KafkaPartitionOffset, error) {
	sub, err := c.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: topic, Start: &pb.CmdKafkaSubscribe_Latest{Latest: true}})
	if err != nil {
		return nil, err
	}
	if err := sub.Unsubscribe(ctx); err != nil {
		return nil, errors.Join(errors.New("client: end the offsets subscription"), err)
	}
	return sub.Starts, nil
}
