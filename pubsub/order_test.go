package pubsub

import (
	"context"
	"testing"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// TestOrderCountsRequestsPerCommand pins Request.Order: each command's
// requests are numbered from 0 in the order the session read them,
// whatever other commands come between.
func TestOrderCountsRequestsPerCommand(t *testing.T) {
	m := NewMux()
	record := func(_ context.Context, req *Request) (*pb.PubSubResp, error) {
		return &pb.PubSubResp{Resp: &pb.PubSubResp_PongResp{PongResp: &pb.PongResp{State: []byte{byte(req.Order())}}}}, nil
	}
	m.On(CmdPing, HandlerFunc(record))
	m.On(CmdKafkaFetch, HandlerFunc(record))
	p := startSession(t, context.Background(), m, Options{})
	want := map[int64]byte{}
	var pings, fetches byte
	for seq := int64(1); seq <= 8; seq++ {
		if seq%3 == 0 {
			p.send(fetchReq(seq, "t"))
			want[seq] = fetches
			fetches++
		} else {
			p.send(ping(seq, ""))
			want[seq] = pings
			pings++
		}
		resp := p.recv()
		if got := resp.GetPongResp().GetState(); len(got) != 1 || got[0] != want[resp.GetSequence()] {
			t.Fatalf("request %d: order %v, want %d", resp.GetSequence(), got, want[resp.GetSequence()])
		}
	}
}
