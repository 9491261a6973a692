package client

import (
	"context"
	"net/http"
	"testing"
	"time"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

func TestUpgradeHeaderCarriesTheToken(t *testing.T) {
	given := http.Header{"Authorization": {"Basic old"}, "X-Other": {"1"}}
	h := upgradeHeader(Options{Header: given, Token: "T"})
	if h.Get("Authorization") != "Bearer T" || h.Get("X-Other") != "1" {
		t.Fatalf("header %v", h)
	}
	if given.Get("Authorization") != "Basic old" {
		t.Fatal("the caller's header was changed")
	}
	if h := upgradeHeader(Options{Token: "T"}); h.Get("Authorization") != "Bearer T" {
		t.Fatalf("header without Options.Header: %v", h)
	}
	if h := upgradeHeader(Options{Header: given}); h.Get("Authorization") != "Basic old" {
		t.Fatalf("header without a token: %v", h)
	}
}

// TestAuth: Auth sends cmd_auth and returns auth_resp's expiry.
func TestAuth(t *testing.T) {
	exp := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	mux := pubsub.NewMux()
	mux.On(pubsub.CmdAuth, pubsub.HandlerFunc(func(_ context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		if req.Msg.GetCmdAuth().GetToken() != "fresh" {
			t.Errorf("token %q", req.Msg.GetCmdAuth().GetToken())
		}
		return &pb.PubSubResp{Resp: &pb.PubSubResp_AuthResp{AuthResp: &pb.AuthResp{ExpiresAt: exp.UnixMilli()}}}, nil
	}))
	c, _ := serve(t, mux)
	until, err := c.Auth(testCtx(t), "fresh")
	if err != nil || !until.Equal(exp) {
		t.Fatalf("Auth: %v %v, want %v", until, err, exp)
	}
}
