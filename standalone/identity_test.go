package standalone_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/standalone"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// identityServer serves a kfake cluster with topics behind the issuer's
// identity (required or not) and the access section accessYAML; logs go to
// the returned buffer at debug level.
func identityServer(t *testing.T, is *testkit.Issuer, required bool, accessYAML string, topics ...string) (*testkit.Server, []string, *syncBuffer) {
	t.Helper()
	k := testkit.Kafka(t, kfake.SeedTopics(1, topics...))
	logs := &syncBuffer{}
	doc := testkit.ClusterYAML(k.ListenAddrs(), "    produce_topics: [\"*\"]\n    groups: [\"*\"]\n"+accessYAML, is.IdentityYAML(required))
	return testkit.StartServer(t, doc, logs), k.ListenAddrs(), logs
}

// upgrade sends a WebSocket upgrade to rawURL with header and returns the
// status, and the body of a refusal.
func upgrade(t *testing.T, rawURL string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, "" // the body is the session's
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func dialToken(t *testing.T, srv *testkit.Server, token string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL("kafka"), client.Options{Token: token})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestUpgradeRefusedWithoutAVerifiedToken: identity.required refuses an
// upgrade without a token, and every token that does not verify, with 401
// and a body that says why; neither token nor claim reaches the log.
func TestUpgradeRefusedWithoutAVerifiedToken(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv, _, logs := identityServer(t, is, true, "")
	other := testkit.NewIssuer(t)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, is.Claims("alice", time.Minute, nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	hmac, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, is.Claims("alice", time.Minute, nil)).SignedString(is.JWKS)
	// HS256 with the RSA key's PEM as the secret, naming the RSA key: the
	// algorithm confusion attack on verifiers that trust the token's alg.
	confused := jwt.NewWithClaims(jwt.SigningMethodHS256, is.Claims("alice", time.Minute, nil))
	confused.Header["kid"] = is.KeyID("RS256")
	hmacPEM, _ := confused.SignedString(is.PublicKeyPEM(t, "RS256"))
	notYet := is.Claims("alice", time.Hour, map[string]any{"nbf": time.Now().Add(time.Hour).Unix()})
	noExp := is.Claims("alice", time.Minute, nil)
	delete(noExp, "exp")
	wrongIss := is.Claims("alice", time.Minute, nil)
	wrongIss["iss"] = "https://evil.test"
	wrongAud := is.Claims("alice", time.Minute, nil)
	wrongAud["aud"] = "elsewhere"
	for name, c := range map[string]struct{ token, body string }{
		"no token":     {"", "authentication required"},
		"malformed":    {"secret-garbage", "authentication failed: malformed token"},
		"expired":      {is.Token(t, "alice", -time.Minute, nil), "authentication failed: token expired"},
		"unsigned":     {none, "authentication failed: signing algorithm not allowed"},
		"hmac":         {hmac, "authentication failed: signing algorithm not allowed"},
		"hmac pem":     {hmacPEM, "authentication failed: signing algorithm not allowed"},
		"not yet":      {is.Sign(t, "ES256", notYet), "authentication failed: token not valid yet"},
		"no exp":       {is.Sign(t, "EdDSA", noExp), "authentication failed: token has no exp claim"},
		"wrong key":    {other.Token(t, "alice", time.Minute, nil), "authentication failed: signature not verified"},
		"wrong issuer": {is.Sign(t, "ES256", wrongIss), "authentication failed: wrong issuer"},
		"wrong aud":    {is.Sign(t, "EdDSA", wrongAud), "authentication failed: wrong audience"},
	} {
		for _, how := range []string{"header", "query"} {
			u, h := srv.URL("kafka"), http.Header{}
			switch {
			case c.token == "":
			case how == "header":
				h.Set("Authorization", "Bearer "+c.token)
			default:
				u += "?access_token=" + url.QueryEscape(c.token)
			}
			status, body := upgrade(t, strings.Replace(u, "ws://", "http://", 1), h)
			if status != http.StatusUnauthorized || !strings.Contains(body, c.body) {
				t.Errorf("%s (%s): %d %q, want 401 %q", name, how, status, body, c.body)
			}
			if c.token != "" && (strings.Contains(body, c.token) || strings.Contains(logs.String(), c.token)) {
				t.Errorf("%s (%s): the token was written", name, how)
			}
		}
	}
	if strings.Contains(logs.String(), "alice") {
		t.Error("a claim reached the log")
	}
	// A good token, from the header or the query, opens a session.
	good := is.Token(t, "alice", time.Minute, nil)
	if _, err := dialToken(t, srv, good).Ping(testCtx(t), []byte("x")); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	c, err := client.Dial(ctx, srv.URL("kafka")+"?access_token="+good, client.Options{})
	if err != nil {
		t.Fatalf("token in the query: %v", err)
	}
	c.Close()
	if strings.Contains(logs.String(), good) {
		t.Error("the token reached the log")
	}
}

func TestStandaloneIdentityNeedsJWT(t *testing.T) {
	doc, err := config.Parse([]byte("identity: {required: true, envoy_jwt_metadata: p}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := standalone.Start(doc, "127.0.0.1:0", standalone.Options{}); err == nil || !strings.Contains(err.Error(), "identity.jwt") {
		t.Fatalf("started without identity.jwt: %v", err)
	}
}

// TestOwnTopicsOnly: with read: ["user.{sub}"], a session reads its own
// topic (fetch, list offset, subscribe) and is refused another's; a session
// without a token where identity is optional gets neither.
func TestOwnTopicsOnly(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv, brokers, _ := identityServer(t, is, false, "    access: [{read: [\"user.{sub}\"]}]\n", "user.alice", "user.bob")
	testkit.Produce(t, brokers, "user.alice", 0, testkit.Numbered(2))
	testkit.Produce(t, brokers, "user.bob", 0, testkit.Numbered(2))
	alice := dialToken(t, srv, is.Token(t, "alice", time.Minute, nil))
	ctx := testCtx(t)
	if msgs, err := alice.Fetch(ctx, "user.alice", 0, 0); err != nil || len(msgs) != 2 {
		t.Fatalf("own fetch: %v %v", msgs, err)
	}
	if off, err := alice.ListOffset(ctx, "user.alice", 0, -1); err != nil || off != 2 {
		t.Fatalf("own list offset: %v %v", off, err)
	}
	sub, err := alice.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "user.alice"})
	if err != nil {
		t.Fatalf("own subscribe: %v", err)
	}
	sub.Unsubscribe(ctx)
	anonymous := dialToken(t, srv, "")
	for name, c := range map[string]*client.Client{"alice": alice, "anonymous": anonymous} {
		for _, topic := range []string{"user.bob", "user.alice"} {
			if name == "alice" && topic == "user.alice" {
				continue
			}
			_, errFetch := c.Fetch(ctx, topic, 0, 0)
			_, errList := c.ListOffset(ctx, topic, 0, -1)
			_, errSub := c.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: topic})
			for cmd, err := range map[string]error{"fetch": errFetch, "list offset": errList, "subscribe": errSub} {
				var se *client.ServerError
				if !errors.As(err, &se) || !strings.HasSuffix(se.Message, "err: topic not allowed") {
					t.Errorf("%s: %s of %s: %v, want topic not allowed", name, cmd, topic, err)
				}
			}
		}
	}
}

// TestProducedRecordsCarryTheRuleRecords: the produce rule's records are set
// on every record, replacing the headers and key the client sent.
func TestProducedRecordsCarryTheRuleRecords(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv, brokers, _ := identityServer(t, is, true, `    access:
      - produce: ["chat"]
        records: {headers: {sender: "{sub}", tenant: "{tenant}"}}
`, "chat")
	c := dialToken(t, srv, is.Token(t, "alice", time.Minute, map[string]any{"tenant": "acme"}))
	_, err := c.Produce(testCtx(t), "chat", 0,
		&pb.KafkaRecord{Key: []byte("k"), Value: []byte("hi"), Headers: []*pb.KafkaHeader{
			{Key: "sender", Value: []byte("mallory")}, {Key: "trace", Value: []byte("1")},
		}},
		&pb.KafkaRecord{Value: []byte("two")})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"chat": {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got []string
	for len(got) < 2 {
		fs := cl.PollFetches(testCtx(t))
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			s := string(r.Value) + ":"
			for _, h := range r.Headers {
				s += " " + h.Key + "=" + string(h.Value)
			}
			got = append(got, s)
		})
	}
	want := []string{"hi: trace=1 sender=alice tenant=acme", "two: sender=alice tenant=acme"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("records\n got %q\nwant %q", got, want)
	}
}

// expiringToken returns a token of sub that expires life from now, with a
// sub-second exp so that tests need not wait whole seconds, and that exp
// less the float rounding of its last millisecond.
func expiringToken(t *testing.T, is *testkit.Issuer, sub string, life time.Duration) (string, time.Time) {
	exp := time.UnixMilli(time.Now().Add(life).UnixMilli())
	claims := is.Claims(sub, 0, nil)
	claims["exp"] = float64(exp.UnixMilli()) / 1000
	return is.Sign(t, "ES256", claims), exp.Add(-time.Millisecond)
}

// waitClose returns the close code and reason the server ended c with.
func waitClose(t *testing.T, c *client.Client) (int, string, time.Time) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the session did not end")
	}
	at := time.Now()
	var ce client.CloseError
	if !errors.As(c.Err(), &ce) {
		t.Fatalf("session ended with %v, want a close frame", c.Err())
	}
	return int(ce.Code), ce.Reason, at
}

func TestSessionEndsAtTokenExpiry(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv, _, _ := identityServer(t, is, true, "")
	token, exp := expiringToken(t, is, "alice", 1500*time.Millisecond)
	c := dialToken(t, srv, token)
	code, reason, at := waitClose(t, c)
	if code != int(identity.CloseTokenExpired) || reason != "token expired" {
		t.Fatalf("closed with %d %q, want 4401 token expired", code, reason)
	}
	if at.Before(exp) {
		t.Fatalf("closed at %v, before exp %v", at, exp)
	}
}

// TestCmdAuthExtendsTheSession: a fresh token for the same subject moves the
// end to its exp; one for another subject and a bad one are refused and
// change nothing: the session still ends at the first token's exp.
func TestCmdAuthExtendsTheSession(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv, _, logs := identityServer(t, is, true, "")
	ctx := testCtx(t)

	first, _ := expiringToken(t, is, "alice", 1500*time.Millisecond)
	c := dialToken(t, srv, first)
	fresh, freshExp := expiringToken(t, is, "alice", time.Hour)
	until, err := c.Auth(ctx, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if d := until.Sub(freshExp); d < 0 || d > time.Millisecond {
		t.Fatalf("expires_at %v, want %v", until, freshExp)
	}
	// Wait past the first token's exp: the session is still served.
	time.Sleep(2 * time.Second)
	if _, err := c.Ping(ctx, []byte("alive")); err != nil {
		t.Fatalf("the refreshed session ended: %v", err)
	}

	short, shortExp := expiringToken(t, is, "alice", 1500*time.Millisecond)
	d := dialToken(t, srv, short)
	bob, _ := expiringToken(t, is, "bob", time.Hour)
	expired := is.Token(t, "alice", -time.Minute, nil)
	for token, want := range map[string]string{bob: "token subject changed", expired: "authentication failed", "junk": "authentication failed"} {
		_, err := d.Auth(ctx, token)
		var se *client.ServerError
		if !errors.As(err, &se) || se.Message != want {
			t.Errorf("cmd_auth: %v, want %q", err, want)
		}
		if strings.Contains(logs.String(), token) {
			t.Error("a cmd_auth token reached the log")
		}
	}
	code, _, at := waitClose(t, d)
	if code != int(identity.CloseTokenExpired) || at.Before(shortExp) {
		t.Fatalf("closed with %d at %v (exp %v), want 4401 after exp", code, at, shortExp)
	}
}

// TestJWKSURIOnTheStandaloneServer: tokens verify against the JWK Set a
// jwks_uri serves; while it cannot be fetched, upgrades get 401 saying the
// token could not be verified.
func TestJWKSURIOnTheStandaloneServer(t *testing.T) {
	is := testkit.NewIssuer(t)
	var failing atomic.Bool
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.Write(is.JWKS)
	}))
	t.Cleanup(idp.Close)
	k := testkit.Kafka(t)
	for _, down := range []bool{false, true} {
		failing.Store(down)
		srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "",
			fmt.Sprintf("identity:\n  required: true\n  jwt: {jwks_uri: %q, issuer: %q}\n", idp.URL+"/jwks.json", is.Name)), nil)
		h := http.Header{"Authorization": {"Bearer " + is.Sign(t, "EdDSA", is.Claims("alice", time.Minute, nil))}}
		status, body := upgrade(t, strings.Replace(srv.URL("kafka"), "ws://", "http://", 1), h)
		switch {
		case down && (status != http.StatusUnauthorized || body != "authentication failed: the token could not be verified\n"):
			t.Errorf("the JWK Set unavailable: %d %q, want 401", status, body)
		case !down && status != http.StatusSwitchingProtocols:
			t.Errorf("a token of the jwks_uri's key: %d %q, want 101", status, body)
		}
	}
}
