package pubsub

import (
	"context"
	"testing"
	"time"

	"github.com/gobwas/ws"

	pb "github.com/envoy-pubsub/gateway/proto"
)

const (
	testDeadlineCode   ws.StatusCode = 4401
	testDeadlineReason               = "credential expired"
)

func TestDeadlineClosesTheSessionWithItsCode(t *testing.T) {
	const life = 150 * time.Millisecond
	start := time.Now()
	d := NewDeadline(start.Add(life), testDeadlineCode, testDeadlineReason)
	p := startSession(t, context.Background(), NewMux(), Options{Deadline: d, PingInterval: -1})
	code, reason := p.expectClose()
	if code != testDeadlineCode || reason != testDeadlineReason {
		t.Fatalf("closed with %d %q, want %d %q", code, reason, testDeadlineCode, testDeadlineReason)
	}
	if took := time.Since(start); took < life {
		t.Fatalf("closed after %v, before the deadline %v", took, life)
	}
}

func TestDeadlineInThePastClosesAtOnce(t *testing.T) {
	d := NewDeadline(time.Now().Add(-time.Second), testDeadlineCode, testDeadlineReason)
	p := startSession(t, context.Background(), NewMux(), Options{Deadline: d, PingInterval: -1})
	if code, _ := p.expectClose(); code != testDeadlineCode {
		t.Fatalf("closed with %d, want %d", code, testDeadlineCode)
	}
}

// TestHandlerMovesTheDeadline: a handler that extends the deadline keeps
// the session open past the first moment; one that sets it to now ends it.
func TestHandlerMovesTheDeadline(t *testing.T) {
	const life = 200 * time.Millisecond
	start := time.Now()
	d := NewDeadline(start.Add(life), testDeadlineCode, testDeadlineReason)
	mux := NewMux()
	mux.On(CmdEmpty, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		d.Set(d.At().Add(time.Hour))
		return &pb.PubSubResp{Resp: &pb.PubSubResp_PongResp{PongResp: &pb.PongResp{}}}, nil
	}))
	p := startSession(t, context.Background(), mux, Options{Deadline: d, PingInterval: -1, IdleTimeout: -1})
	p.send(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdEmpty{CmdEmpty: &pb.CmdEmpty{}}})
	if r := p.recv(); r.GetPongResp() == nil {
		t.Fatalf("got %v", r)
	}
	time.Sleep(2 * life) // past the first deadline: the session must still answer
	p.send(ping(2, "still here"))
	if r := p.recv(); string(r.GetPongResp().GetState()) != "still here" {
		t.Fatalf("session ended at the old deadline: %v", r)
	}
	d.Set(time.Now())
	if code, reason := p.expectClose(); code != testDeadlineCode || reason != testDeadlineReason {
		t.Fatalf("closed with %d %q", code, reason)
	}
}

func TestDeadlineUnboundAfterTheSession(t *testing.T) {
	d := NewDeadline(time.Time{}, testDeadlineCode, testDeadlineReason)
	p := startSession(t, context.Background(), NewMux(), Options{Deadline: d, PingInterval: -1})
	p.conn.Close()
	err := <-p.done
	p.done <- err // for the cleanup of startSession
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	d.Set(time.Now()) // no session: nothing to close, nothing panics
	if d.At().IsZero() {
		t.Fatal("Set did not move the deadline")
	}
}
