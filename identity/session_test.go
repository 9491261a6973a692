package identity_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

func authRequest(token string) *pubsub.Request {
	return &pubsub.Request{Command: pubsub.CmdAuth, Msg: &pb.PubSubReq{Req: &pb.PubSubReq_CmdAuth{CmdAuth: &pb.CmdAuth{Token: token}}}}
}

func TestSessionDeadlineFollowsExp(t *testing.T) {
	exp := time.Unix(2000000000, 500_000_000)
	s := identity.NewSession(identity.Claims{"sub": "a", "exp": 2000000000.5}, nil, nil)
	if got := s.Deadline().At(); !got.Equal(exp) {
		t.Fatalf("deadline %v, want %v", got, exp)
	}
	if at := identity.NewSession(identity.Claims{"sub": "a"}, nil, nil).Deadline().At(); !at.IsZero() {
		t.Fatalf("a payload without exp set the deadline %v", at)
	}
}

func TestCmdAuthRefusals(t *testing.T) {
	is := testkit.NewIssuer(t)
	v, err := identity.NewVerifier(&config.JWT{JWKSFile: is.JWKSFile, Issuer: is.Name}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	first := time.Now().Add(time.Hour).Truncate(time.Second)
	alice := identity.NewSession(identity.Claims{"sub": "alice", "exp": float64(first.Unix())}, v, nil)

	// Not supported without a verifier, whatever the token.
	if _, err := identity.NewSession(identity.Claims{"sub": "alice"}, nil, nil).ServePubSub(ctx, authRequest(is.Token(t, "alice", time.Hour, nil))); !errors.Is(err, identity.ErrRefreshNotSupported) {
		t.Fatalf("without verifier: %v", err)
	}
	// An anonymous session has no subject to refresh.
	if _, err := identity.NewSession(identity.Claims{}, v, nil).ServePubSub(ctx, authRequest(is.Token(t, "alice", time.Hour, nil))); !errors.Is(err, identity.ErrSubjectChanged) {
		t.Fatalf("anonymous session: %v", err)
	}
	for token, want := range map[string]error{
		is.Token(t, "bob", 2*time.Hour, nil):    identity.ErrSubjectChanged,
		is.Token(t, "alice", -time.Minute, nil): identity.ErrAuthFailed,
		"":                                      identity.ErrAuthFailed,
	} {
		if _, err := alice.ServePubSub(ctx, authRequest(token)); !errors.Is(err, want) {
			t.Errorf("got %v, want %v", err, want)
		}
		if !alice.Deadline().At().Equal(first) {
			t.Fatalf("a refused token moved the deadline to %v", alice.Deadline().At())
		}
	}
	// A token that expires sooner takes no time away.
	resp, err := alice.ServePubSub(ctx, authRequest(is.Token(t, "alice", time.Minute, nil)))
	if err != nil || resp.GetAuthResp().GetExpiresAt() != first.UnixMilli() || !alice.Deadline().At().Equal(first) {
		t.Fatalf("sooner token: %v %v, deadline %v", resp, err, alice.Deadline().At())
	}
	later := time.Now().Add(3 * time.Hour).Truncate(time.Second)
	resp, err = alice.ServePubSub(ctx, authRequest(is.Token(t, "alice", time.Until(later)+500*time.Millisecond, nil)))
	if err != nil || resp.GetAuthResp().GetExpiresAt() != later.UnixMilli() {
		t.Fatalf("later token: %v %v, want expires_at %d", resp, err, later.UnixMilli())
	}
}
