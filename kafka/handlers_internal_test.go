package kafka

import (
	"context"
	"errors"
	"testing"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// TestNewHandlerAllocatesOnlyTheSessionsState: a session's handler is its
// handlers and its broker lane, nothing per command (a Mux of function
// values per command cost every session about 300 bytes).
func TestNewHandlerAllocatesOnlyTheSessionsState(t *testing.T) {
	k := &Cluster{}
	var h pubsub.Handler
	n := testing.AllocsPerRun(100, func() { h = NewHandler(k, Policy{}) })
	if h == nil || n != 2 {
		t.Fatalf("NewHandler allocates %v times, want 2 (handlers and lane)", n)
	}
}

// TestHandlerAnswersPingAndRefusesUnknownCommands: the session's handler
// answers cmd_ping as a Mux does, and a command it does not serve gets
// pubsub.ErrUnknownCommand.
func TestHandlerAnswersPingAndRefusesUnknownCommands(t *testing.T) {
	h := NewHandler(&Cluster{}, Policy{})
	ping := &pb.PubSubReq{Sequence: 3, Req: &pb.PubSubReq_CmdPing{CmdPing: &pb.CmdPing{State: []byte("s")}}}
	resp, err := h.ServePubSub(context.Background(), &pubsub.Request{Msg: ping, Command: pubsub.CmdPing})
	if err != nil || string(resp.GetPongResp().GetState()) != "s" {
		t.Fatalf("ping: %v, %v; want a pong of state s", resp, err)
	}
	auth := &pb.PubSubReq{Sequence: 4, Req: &pb.PubSubReq_CmdAuth{CmdAuth: &pb.CmdAuth{}}}
	if _, err := h.ServePubSub(context.Background(), &pubsub.Request{Msg: auth, Command: pubsub.CmdAuth}); !errors.Is(err, pubsub.ErrUnknownCommand) {
		t.Fatalf("cmd_auth: %v, want %v", err, pubsub.ErrUnknownCommand)
	}
}

// TestSubscriptionsAreFoundBySequenceAndBounded: a session's subscriptions
// are found and removed by the sequence of their request, a sequence is
// taken once, and their partitions stay within MaxSubscribedPartitions.
func TestSubscriptionsAreFoundBySequenceAndBounded(t *testing.T) {
	var subs subscriptions
	a, b, c := &subscription{partitions: 1}, &subscription{partitions: 2}, &subscription{partitions: MaxSubscribedPartitions - 3}
	for seq, sub := range map[int64]*subscription{1: a, 2: b, 3: c} {
		if err := subs.add(seq, sub); err != nil {
			t.Fatalf("add %d: %v", seq, err)
		}
	}
	if err := subs.add(2, &subscription{partitions: 0}); !errors.Is(err, ErrDuplicateSubscription) {
		t.Fatalf("second add of 2: %v, want %v", err, ErrDuplicateSubscription)
	}
	if err := subs.add(4, &subscription{partitions: 1}); !errors.Is(err, ErrTooManySubscriptions) {
		t.Fatalf("add past the bound: %v, want %v", err, ErrTooManySubscriptions)
	}
	if got := subs.remove(2); got != b {
		t.Fatalf("remove 2: %p, want %p", got, b)
	}
	if got := subs.remove(2); got != nil {
		t.Fatalf("remove 2 again: %p, want nil", got)
	}
	if err := subs.add(4, &subscription{partitions: 2}); err != nil {
		t.Fatalf("add within the room remove 2 left: %v", err)
	}
	if got := subs.remove(1); got != a {
		t.Fatalf("remove 1: %p, want %p", got, a)
	}
	if got := subs.remove(3); got != c {
		t.Fatalf("remove 3: %p, want %p", got, c)
	}
	if subs.partitions != 2 || len(subs.live) != 1 {
		t.Fatalf("left %d partitions in %d subscriptions, want 2 in 1", subs.partitions, len(subs.live))
	}
}
