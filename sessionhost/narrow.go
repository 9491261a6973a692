package sessionhost

import (
	"context"
	"path"

	"github.com/envoy-pubsub/gateway/kafka"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// narrowTopics returns next restricted to topics that pass every route
// allow-list (exact names and path.Match globs). A denied topic gets the
// kafka package's "topic not allowed" error without contacting Kafka.
func narrowTopics(next pubsub.Handler, routeTopics [][]string) pubsub.Handler {
	if len(routeTopics) == 0 {
		return next
	}
	return pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		var op, topic string
		var partition int32
		switch req.Command {
		case pubsub.CmdKafkaFetch:
			cmd := req.Msg.GetCmdKafkaFetch()
			op, topic, partition = "fetch message", cmd.GetTopic(), cmd.GetPartition()
		case pubsub.CmdKafkaListOffset:
			cmd := req.Msg.GetCmdKafkaListOffset()
			op, topic, partition = "list offset", cmd.GetTopic(), cmd.GetPartition()
		default:
			return next.ServePubSub(ctx, req)
		}
		for _, list := range routeTopics {
			if !matchesAny(list, topic) {
				return nil, &kafka.CommandError{Op: op, Topic: topic, Partition: partition, Cause: kafka.ErrTopicNotAllowed}
			}
		}
		return next.ServePubSub(ctx, req)
	})
}

func matchesAny(patterns []string, topic string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, topic); ok {
			return true
		}
	}
	return false
}
