package filter

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/identity"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/sessionhost"
)

const identityDoc = "identity: {required: true, envoy_jwt_metadata: jwt_payload}\n"

// verifiedAs returns callbacks of a request routed to cluster whose token
// jwt_authn verified with payload (under key jwt_payload).
func verifiedAs(cluster string, payload map[string]interface{}) *callbacks {
	cb := routedTo(cluster)
	cb.metadata = map[string]map[string]interface{}{JWTAuthnNamespace: {"jwt_payload": payload}}
	return cb
}

func TestIdentityRequiredWithoutJWTPayloadGets401(t *testing.T) {
	p := parsePlugin(t, identityDoc+oneCluster)
	for name, cb := range map[string]*callbacks{
		"no metadata": routedTo("kafka"),
		"other key": func() *callbacks {
			c := routedTo("kafka")
			c.metadata = map[string]map[string]interface{}{JWTAuthnNamespace: {"other": map[string]interface{}{"sub": "a"}}}
			return c
		}(),
		"not an object": func() *callbacks {
			c := routedTo("kafka")
			c.metadata = map[string]map[string]interface{}{JWTAuthnNamespace: {"jwt_payload": "x"}}
			return c
		}(),
	} {
		h := upgradeHeaders()
		if st := decode(p.cfg, cb, h); st != api.LocalReply {
			t.Fatalf("%s: status %v, want a local reply", name, st)
		}
		if len(cb.replies) != 1 || cb.replies[0].status != 401 || !strings.Contains(cb.replies[0].body, "verified token") {
			t.Errorf("%s: replies %+v, want 401", name, cb.replies)
		}
		if _, ok := h.Get(sessionhost.TicketHeader); ok {
			t.Errorf("%s: a ticket was issued", name)
		}
	}
	// Other clusters are not the filter's to guard.
	if st := decode(p.cfg, routedTo("web"), upgradeHeaders()); st != api.Continue {
		t.Errorf("other cluster: %v", st)
	}
}

func TestJWTPayloadTravelsInTheTicket(t *testing.T) {
	p := parsePlugin(t, identityDoc+oneCluster)
	h := upgradeHeaders()
	payload := map[string]interface{}{"sub": "alice", "tenant": "acme", "rooms": []interface{}{"a", "b"}, "exp": float64(time.Now().Add(time.Hour).Unix())}
	if st := decode(p.cfg, verifiedAs("kafka", payload), h); st != api.Continue {
		t.Fatalf("status %v", st)
	}
	v, _ := h.Get(sessionhost.TicketHeader)
	g, err := p.cfg.host.Redeem(v)
	if err != nil {
		t.Fatal(err)
	}
	if g.Claims.Subject() != "alice" || strings.Join(g.Claims.Values("rooms"), ",") != "a,b" || g.Verifier != nil {
		t.Fatalf("grant claims %v, verifier %v", g.Claims, g.Verifier)
	}
	if strings.Contains(testLog.text(), "acme") {
		t.Error("a claim reached the log")
	}
}

// TestEnvoySessionIsScopedAndEndsAtExp: the session of a ticket carrying
// jwt_authn's payload reads its own topic only, cannot refresh in-band
// without identity.jwt, and ends with 4401 at the payload's exp.
func TestEnvoySessionIsScopedAndEndsAtExp(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "user.alice", "user.bob"))
	p := parsePlugin(t, identityDoc+testkit.ClusterYAML(k.ListenAddrs(), "    access: [{read: [\"user.{sub}\"]}]\n", ""))
	exp := time.Now().Add(1500 * time.Millisecond)
	h := upgradeHeaders()
	payload := map[string]interface{}{"sub": "alice", "exp": float64(exp.UnixMilli()) / 1000}
	if st := decode(p.cfg, verifiedAs("kafka", payload), h); st != api.Continue {
		t.Fatalf("status %v", st)
	}
	v, _ := h.Get(sessionhost.TicketHeader)
	c, err := p.dial(v)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.ListOffset(ctx, "user.alice", 0, -1); err != nil {
		t.Fatalf("own topic: %v", err)
	}
	if _, err := c.ListOffset(ctx, "user.bob", 0, -1); err == nil || !strings.HasSuffix(err.Error(), "topic not allowed") {
		t.Fatalf("other topic: %v", err)
	}
	var se *client.ServerError
	if _, err := c.Auth(ctx, "any"); !errors.As(err, &se) || se.Message != identity.ErrRefreshNotSupported.Error() {
		t.Fatalf("cmd_auth without identity.jwt: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session outlived its token")
	}
	var ce client.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != identity.CloseTokenExpired || ce.Reason != "token expired" {
		t.Fatalf("session ended with %v, want 4401 token expired", c.Err())
	}
	if time.Now().Before(exp.Add(-time.Millisecond)) {
		t.Fatal("session ended before exp")
	}
}

// TestEnvoyCmdAuthWithIdentityJWT: with identity.jwt in the filter config,
// cmd_auth verifies a fresh token for the subject jwt_authn verified.
func TestEnvoyCmdAuthWithIdentityJWT(t *testing.T) {
	is := testkit.NewIssuer(t)
	doc := "identity:\n  envoy_jwt_metadata: jwt_payload\n  jwt: {jwks_file: " + is.JWKSFile + ", issuer: " + is.Name + "}\n" + oneCluster
	p := parsePlugin(t, doc)
	h := upgradeHeaders()
	if st := decode(p.cfg, verifiedAs("kafka", map[string]interface{}{"sub": "alice", "exp": float64(time.Now().Add(time.Minute).Unix())}), h); st != api.Continue {
		t.Fatalf("status %v", st)
	}
	v, _ := h.Get(sessionhost.TicketHeader)
	c, err := p.dial(v)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if until, err := c.Auth(ctx, is.Token(t, "alice", time.Hour, nil)); err != nil || time.Until(until) < 59*time.Minute {
		t.Fatalf("cmd_auth: %v %v", until, err)
	}
	var se *client.ServerError
	if _, err := c.Auth(ctx, is.Token(t, "bob", time.Hour, nil)); !errors.As(err, &se) || se.Message != "token subject changed" {
		t.Fatalf("cmd_auth for bob: %v", err)
	}
}

// TestAnonymousUpgradeWhereIdentityIsOptional: without identity.required an
// upgrade without a verified token gets a ticket for an anonymous session
// (empty claims: rules naming claims match nothing for it).
func TestAnonymousUpgradeWhereIdentityIsOptional(t *testing.T) {
	p := parsePlugin(t, "identity: {envoy_jwt_metadata: jwt_payload}\n"+oneCluster)
	h := upgradeHeaders()
	if st := decode(p.cfg, routedTo("kafka"), h); st != api.Continue {
		t.Fatalf("status %v", st)
	}
	v, _ := h.Get(sessionhost.TicketHeader)
	g, err := p.cfg.host.Redeem(v)
	if err != nil {
		t.Fatal(err)
	}
	if g.Claims == nil || len(g.Claims) != 0 {
		t.Fatalf("claims %v, want empty (anonymous)", g.Claims)
	}
}
