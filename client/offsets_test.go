package client

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

func TestLatestOffsetsSubscribesAtTheEndAndUnsubscribes(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []proto.Message
	)
	mux := pubsub.NewMux()
	mux.On(pubsub.CmdKafkaSubscribe, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		mu.Lock()
		seen = append(seen, req.Msg.GetCmdKafkaSubscribe())
		mu.Unlock()
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaSubscribeResp{KafkaSubscribeResp: &pb.KafkaSubscribeResp{
			Partitions: []*pb.KafkaPartitionOffset{{Partition: 0, Offset: 5}, {Partition: 1, Offset: 9}},
		}}}, nil
	}))
	mux.On(pubsub.CmdKafkaUnsubscribe, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		mu.Lock()
		seen = append(seen, req.Msg.GetCmdKafkaUnsubscribe())
		mu.Unlock()
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaUnsubscribeResp{KafkaUnsubscribeResp: &pb.KafkaUnsubscribeResp{
			Subscription: req.Msg.GetCmdKafkaUnsubscribe().GetSubscription(),
		}}}, nil
	}))
	c, _ := serve(t, mux)
	got, err := c.LatestOffsets(testCtx(t), "orders")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].GetOffset() != 5 || got[1].GetPartition() != 1 || got[1].GetOffset() != 9 {
		t.Errorf("offsets %v", got)
	}
	mu.Lock()
	defer mu.Unlock()
	wantSub := &pb.CmdKafkaSubscribe{Topic: "orders", Start: &pb.CmdKafkaSubscribe_Latest{Latest: true}}
	if len(seen) != 2 || !proto.Equal(seen[0], wantSub) || seen[1].(*pb.CmdKafkaUnsubscribe).GetSubscription() == 0 {
		t.Errorf("requests %v, want a subscription at the latest offsets of every partition, then its end", seen)
	}
}

func TestFetchReplyCarriesTheFilterAndNextOffset(t *testing.T) {
	var got *pb.CmdKafkaFetch
	mux := pubsub.NewMux()
	mux.On(pubsub.CmdKafkaFetch, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		got = req.Msg.GetCmdKafkaFetch()
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{NextOffset: 77}}}, nil
	}))
	c, _ := serve(t, mux)
	cmd := &pb.CmdKafkaFetch{Topic: "orders", Partition: 1, Offset: 3, Filter: &pb.KafkaFilter{Key: []byte("k")}}
	resp, err := c.FetchReply(testCtx(t), cmd)
	if err != nil || resp.GetNextOffset() != 77 {
		t.Fatalf("reply %v, %v", resp, err)
	}
	if !proto.Equal(got, cmd) {
		t.Errorf("server got %v, want %v", got, cmd)
	}
}
