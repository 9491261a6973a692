package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
)

// saslBroker answers SASLHandshake and SASLAuthenticate for one mechanism
// that kfake does not speak, through its control hooks: check judges each
// authentication's bytes, and an accepted session lasts lifetime, after
// which the client must authenticate again (KIP-368).
type saslBroker struct {
	mechanism string
	lifetime  time.Duration
	check     func(auth []byte) error

	mu   sync.Mutex
	seen [][]byte // the authentications' bytes, in order
	errs []error  // what check said of each
}

func newSASLBroker(t *testing.T, k *kfake.Cluster, mechanism string, lifetime time.Duration, check func([]byte) error) *saslBroker {
	b := &saslBroker{mechanism: mechanism, lifetime: lifetime, check: check}
	k.ControlKey(int16(kmsg.SASLHandshake), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		r := req.(*kmsg.SASLHandshakeRequest)
		resp := r.ResponseKind().(*kmsg.SASLHandshakeResponse)
		resp.SupportedMechanisms = []string{mechanism}
		if r.Mechanism != mechanism {
			resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		}
		return resp, nil, true
	})
	k.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		r := req.(*kmsg.SASLAuthenticateRequest)
		resp := r.ResponseKind().(*kmsg.SASLAuthenticateResponse)
		err := check(r.SASLAuthBytes)
		b.mu.Lock()
		b.seen = append(b.seen, r.SASLAuthBytes)
		b.errs = append(b.errs, err)
		b.mu.Unlock()
		if err != nil {
			resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
			msg := err.Error()
			resp.ErrorMessage = &msg
			return resp, nil, true
		}
		if mechanism == "AWS_MSK_IAM" { // MSK answers a JSON object; OAUTHBEARER's success is empty
			resp.SASLAuthBytes = []byte(`{"version":"2020_10_22","request-id":"test"}`)
		}
		resp.SessionLifetimeMillis = lifetime.Milliseconds()
		return resp, nil, true
	})
	t.Cleanup(func() {
		if t.Failed() {
			b.mu.Lock()
			defer b.mu.Unlock()
			for i, s := range b.seen {
				t.Logf("authentication %d: %q: %v", i, s, b.errs[i])
			}
		}
	})
	return b
}

// authentications returns the bytes of every authentication so far, and
// the check's verdict on each.
func (b *saslBroker) authentications() ([][]byte, []error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]byte(nil), b.seen...), append([]error(nil), b.errs...)
}

// bearer returns the token of an OAUTHBEARER initial response (RFC 7628).
func bearer(auth []byte) (string, error) {
	m := regexp.MustCompile("^n,,\x01auth=Bearer ([^\x01]+)\x01\x01$").FindSubmatch(auth)
	if m == nil {
		return "", fmt.Errorf("not an OAUTHBEARER initial response")
	}
	return string(m[1]), nil
}

// acceptedTokens is the set of tokens the broker accepts, which a test
// changes to revoke one.
type acceptedTokens struct {
	mu sync.Mutex
	ok map[string]bool
}

func (a *acceptedTokens) set(tokens ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ok = map[string]bool{}
	for _, t := range tokens {
		a.ok[t] = true
	}
}

func (a *acceptedTokens) check(auth []byte) error {
	tok, err := bearer(auth)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.ok[tok] {
		return fmt.Errorf("token %q not accepted", tok)
	}
	return nil
}

// sawToken reports whether the broker accepted an authentication with tok.
func (b *saslBroker) sawToken(tok string) bool {
	seen, errs := b.authentications()
	for i, s := range seen {
		if got, _ := bearer(s); got == tok && errs[i] == nil {
			return true
		}
	}
	return false
}

// fetchesThroughGateway waits until a session of srv fetches the topic's
// record: the gateway's clients authenticated.
func fetchesThroughGateway(t *testing.T, srv *testkit.Server, what string) {
	t.Helper()
	c := srv.Dial(t, "kafka")
	testkit.Eventually(t, what, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		msgs, err := c.Fetch(ctx, topic, 0, 0)
		return err == nil && len(msgs) == 1
	})
}

func TestOAuthBearerTokenFileIsReadAgainWhenItChanges(t *testing.T) {
	k := testkit.Kafka(t, kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	testkit.Produce(t, k.ListenAddrs(), topic, 0, testkit.Numbered(1))
	tokens := &acceptedTokens{}
	tokens.set("token-one")
	b := newSASLBroker(t, k, "OAUTHBEARER", 500*time.Millisecond, tokens.check)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("token-one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "    sasl: {mechanism: OAUTHBEARER, token_file: "+tokenFile+"}\n", ""), nil)
	fetchesThroughGateway(t, srv, "a fetch authenticated with the first token")
	if !b.sawToken("token-one") {
		t.Fatal("the broker did not see the first token")
	}

	// The token is renewed in its file and the old one revoked: the
	// gateway's next authentication (its session's re-authentication or a
	// new connection) carries the new one.
	tokens.set("token-two")
	if err := os.WriteFile(tokenFile, []byte("token-two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(tokenFile, later, later); err != nil {
		t.Fatal(err)
	}
	fetchesThroughGateway(t, srv, "a fetch after the token was renewed")
	testkit.Eventually(t, "the broker sees the renewed token", func() bool { return b.sawToken("token-two") })
}

func TestOAuthBearerClientCredentialsAreRefreshedBeforeExpiry(t *testing.T) {
	k := testkit.Kafka(t, kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	testkit.Produce(t, k.ListenAddrs(), topic, 0, testkit.Numbered(1))
	const clientID, clientSecret = "gateway", "oidc-secret-do-not-print"

	// The token endpoint issues token-1, token-2, ... each valid for 61 s:
	// one second before the gateway's refresh margin.
	var (
		mu     sync.Mutex
		issued int
	)
	tokens := &acceptedTokens{} // those the endpoint issued
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if err := r.ParseForm(); err != nil || !ok || id != clientID || secret != clientSecret ||
			r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("scope") != "kafka" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		mu.Lock()
		issued++
		all := make([]string, issued)
		for i := range all {
			all[i] = fmt.Sprintf("token-%d", i+1)
		}
		mu.Unlock()
		tokens.set(all...)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": all[len(all)-1], "token_type": "Bearer", "expires_in": 61})
	}))
	t.Cleanup(endpoint.Close)
	b := newSASLBroker(t, k, "OAUTHBEARER", 500*time.Millisecond, tokens.check)
	t.Setenv("PUBSUB_TEST_OIDC_SECRET", clientSecret)
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), fmt.Sprintf(
		"    sasl: {mechanism: OAUTHBEARER, token_endpoint: %s, client_id: %s, client_secret_env: PUBSUB_TEST_OIDC_SECRET, scope: kafka}\n", endpoint.URL, clientID), ""), nil)
	fetchesThroughGateway(t, srv, "a fetch authenticated with the first token")
	if !b.sawToken("token-1") {
		t.Fatal("the broker did not see the first token")
	}

	// A second later token-1 is within the refresh margin: an
	// authentication after that (the broker asks for one every 500 ms)
	// carries token-2, long before token-1 expires.
	testkit.Eventually(t, "the broker sees the refreshed token", func() bool {
		fetchesThroughGateway(t, srv, "a fetch while the token is refreshed")
		return b.sawToken("token-2")
	})
}

func TestMSKIAMSignsThePayloadAWSDocuments(t *testing.T) {
	const accessKey, secretKey, region = "AKIDPUBSUBTEST", "pubsub-test-secret-key-do-not-print", "eu-west-3"
	t.Setenv("AWS_ACCESS_KEY_ID", accessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", region)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))

	k := testkit.Kafka(t, kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	testkit.Produce(t, k.ListenAddrs(), topic, 0, testkit.Numbered(1))
	b := newSASLBroker(t, k, "AWS_MSK_IAM", 500*time.Millisecond, func(auth []byte) error {
		return checkMSKPayload(auth, accessKey, secretKey, region)
	})
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "    sasl: {mechanism: AWS_MSK_IAM}\n", ""), nil)
	fetchesThroughGateway(t, srv, "a fetch authenticated with MSK IAM")
	// Re-authentication signs afresh.
	testkit.Eventually(t, "the broker sees a second signed payload", func() bool {
		fetchesThroughGateway(t, srv, "a fetch while re-authenticating")
		seen, errs := b.authentications()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("the broker refused a payload: %v", err)
			}
		}
		return len(seen) >= 2
	})
}

// checkMSKPayload checks an AWS_MSK_IAM authentication: a JSON object with
// the fields AWS documents, whose signature is the one the AWS SDK's SigV4
// signer computes for a presigned GET / of kafka-cluster:Connect.
func checkMSKPayload(auth []byte, accessKey, secretKey, region string) error {
	var p map[string]string
	if err := json.Unmarshal(auth, &p); err != nil {
		return fmt.Errorf("payload is not a JSON object of strings: %v", err)
	}
	date, err := time.Parse("20060102T150405Z", p["x-amz-date"])
	if err != nil {
		return fmt.Errorf("x-amz-date %q: %v", p["x-amz-date"], err)
	}
	want := map[string]string{
		"version":             "2020_10_22",
		"host":                "127.0.0.1",
		"user-agent":          "envoy-pubsub",
		"action":              "kafka-cluster:Connect",
		"x-amz-algorithm":     "AWS4-HMAC-SHA256",
		"x-amz-credential":    accessKey + "/" + date.Format("20060102") + "/" + region + "/kafka-cluster/aws4_request",
		"x-amz-signedheaders": "host",
		"x-amz-expires":       "900",
	}
	for key, v := range want {
		if p[key] != v {
			return fmt.Errorf("%s = %q, want %q", key, p[key], v)
		}
	}
	if len(p) != len(want)+2 { // and x-amz-date, x-amz-signature
		return fmt.Errorf("payload has %d fields, want %d", len(p), len(want)+2)
	}
	u := "https://" + p["host"] + "/?Action=" + url.QueryEscape(p["action"]) + "&X-Amz-Expires=900"
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	const emptyBody = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	signed, _, err := v4.NewSigner().PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: accessKey, SecretAccessKey: secretKey},
		req, emptyBody, "kafka-cluster", region, date)
	if err != nil {
		return err
	}
	su, err := url.Parse(signed)
	if err != nil {
		return err
	}
	if sig := su.Query().Get("X-Amz-Signature"); sig == "" || sig != p["x-amz-signature"] {
		return fmt.Errorf("x-amz-signature %q, the SDK signs %q", p["x-amz-signature"], sig)
	}
	if strings.Contains(string(auth), secretKey) {
		return fmt.Errorf("the payload holds the secret key")
	}
	return nil
}

func TestOAuthBearerTokenFileMustHoldATokenAtStart(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := kafka.NewPool()
	t.Cleanup(pool.Close)
	for file, want := range map[string]string{
		filepath.Join(dir, "missing"): "kafka: sasl.token_file: stat " + filepath.Join(dir, "missing"),
		empty:                         "kafka: sasl.token_file: " + empty + " is empty",
	} {
		c := &config.KafkaCluster{Brokers: []string{"127.0.0.1:1"}, SASL: &config.SASL{Mechanism: config.MechanismOAuthBearer, SASLCloud: config.SASLCloud{TokenFile: file}}}
		if _, err := pool.Acquire(c); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("token file %s: %v, want %q", file, err, want)
		}
	}
}
