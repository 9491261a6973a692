package pubsub

import (
	"context"
	"errors"
	"testing"
	"time"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// TestAfterReplyRunsOnceTheReplyIsWritten pins the contract pooled replies
// rely on: the reply is encoded before the hook reuses its memory.
func TestAfterReplyRunsOnceTheReplyIsWritten(t *testing.T) {
	hookRunsAfterEncoding(t, func(_ *Request, resp *pb.PubSubResp) (*pb.PubSubResp, error) { return resp, nil })
}

// hookRunsAfterEncoding answers pings whose pong state is pooled memory
// that an AfterReply hook overwrites, with answer (which returns the reply
// or answers with it otherwise), and checks that every reply carries the
// state as it was: encoded and written before the hook ran.
func hookRunsAfterEncoding(t *testing.T, answer func(req *Request, resp *pb.PubSubResp) (*pb.PubSubResp, error)) {
	t.Helper()
	ran := make(chan struct{}, 1)
	m := NewMux()
	m.On(CmdPing, HandlerFunc(func(_ context.Context, req *Request) (*pb.PubSubResp, error) {
		pooled := []byte(req.Msg.GetCmdPing().GetState())
		req.AfterReply(func() {
			defer func() { ran <- struct{}{} }()
			for i := range pooled {
				pooled[i] = 'x' // the memory goes back to a pool and is reused
			}
		})
		return answer(req, &pb.PubSubResp{Resp: &pb.PubSubResp_PongResp{PongResp: &pb.PongResp{State: pooled}}})
	}))
	p := startSession(t, context.Background(), m, Options{})
	for seq := int64(1); seq <= 3; seq++ {
		p.send(ping(seq, "original"))
		resp := p.recv()
		if got := string(resp.GetPongResp().GetState()); got != "original" || resp.GetSequence() != seq {
			t.Fatalf("reply %d: state %q, sequence %d; the hook ran before the reply was encoded", seq, got, resp.GetSequence())
		}
		select {
		case <-ran:
		case <-time.After(5 * time.Second):
			t.Fatalf("hook of request %d did not run", seq)
		}
	}
}

func TestAfterReplyRunsAfterErrorsAndPanicsDoNotEndTheSession(t *testing.T) {
	ran := make(chan string, 2)
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(_ context.Context, req *Request) (*pb.PubSubResp, error) {
		req.AfterReply(func() { panic("hook failed") })
		req.AfterReply(func() { ran <- "after error" })
		return nil, errors.New("fetch failed")
	}))
	p := startSession(t, context.Background(), m, Options{})
	p.send(fetchReq(1, "t"))
	if msg := errorOf(t, p.recv()); msg != "fetch failed" {
		t.Fatalf("error_resp %q", msg)
	}
	if got := <-ran; got != "after error" {
		t.Fatalf("got %q", got)
	}
	p.send(ping(2, "alive"))
	if resp := p.recv(); string(resp.GetPongResp().GetState()) != "alive" {
		t.Fatalf("session unusable after a panicking hook: %v", resp)
	}
}
