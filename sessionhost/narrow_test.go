package sessionhost

import (
	"context"
	"strings"
	"testing"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

func TestRouteListsNarrowTopics(t *testing.T) {
	routeTopics := [][]string{{"audit-*", "orders"}, {"audit-eu", "billing"}}
	reached := map[string]bool{}
	next := pubsub.HandlerFunc(func(_ context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		reached[req.Msg.GetCmdKafkaFetch().GetTopic()+req.Msg.GetCmdKafkaListOffset().GetTopic()] = true
		return &pb.PubSubResp{}, nil
	})
	h := narrowTopics(next, routeTopics)
	for topic, allowed := range map[string]bool{"audit-eu": true, "billing": false, "orders": false, "audit-us": false} {
		for _, req := range []*pubsub.Request{
			{Command: pubsub.CmdKafkaFetch, Msg: &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaFetch{CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: topic, Partition: 3}}}},
			{Command: pubsub.CmdKafkaListOffset, Msg: &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaListOffset{CmdKafkaListOffset: &pb.CmdKafkaListOffset{Topic: topic, Partition: 3}}}},
		} {
			reached = map[string]bool{}
			_, err := h.ServePubSub(context.Background(), req)
			if allowed != (err == nil) || allowed != reached[topic] {
				t.Errorf("%s %s: err %v, reached %v; want allowed=%v", req.Command, topic, err, reached[topic], allowed)
			}
			if !allowed && !strings.HasSuffix(err.Error(), "partition: 3, err: topic not allowed") {
				t.Errorf("denied error = %q", err)
			}
		}
	}
}
