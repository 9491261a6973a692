package kafka_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/testkit"
)

const (
	topic    = "events"
	user     = "app"
	password = "pw-9f3c1e7a-do-not-print"
)

// pki is a test CA, a second CA nobody trusts, and their files.
type pki struct {
	dir          string
	ca, otherCA  *testkit.CA
	caFile       string
	otherCAFile  string
	brokerCert   tls.Certificate // valid for the loopback names
	clientCertGW tls.Certificate // issued by ca
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir(), ca: testkit.NewCA(t, "test CA"), otherCA: testkit.NewCA(t, "other CA")}
	p.caFile = p.ca.WriteFile(t, p.dir, "ca.pem")
	p.otherCAFile = p.otherCA.WriteFile(t, p.dir, "other-ca.pem")
	p.brokerCert = p.ca.ServerCert(t, testkit.LoopbackNames...)
	p.clientCertGW = p.ca.ClientCert(t, "gateway")
	return p
}

// saslFor returns the franz-go mechanism a producer authenticates with.
func saslFor(mech, user, pass string) sasl.Mechanism {
	switch mech {
	case config.MechanismPlain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism()
	case config.MechanismScramSHA256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	}
	return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
}

// tlsYAML and saslYAML return the cluster lines of a document.
func tlsYAML(fields string) string  { return "    tls: {enabled: true, " + fields + "}\n" }
func saslYAML(fields string) string { return "    sasl: {" + fields + "}\n" }

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// assertFetchOK fetches topic/0 from offset 0 and checks the values.
func assertFetchOK(t *testing.T, c *client.Client, want ...string) {
	t.Helper()
	msgs, err := c.Fetch(ctxFor(t), topic, 0, 0)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, string(m.Value))
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("fetch returned %q, want %q", got, want)
	}
}

// assertFailsWith checks that both Kafka commands answer an error_resp
// naming cause, and that the session still answers a ping afterwards.
func assertFailsWith(t *testing.T, c *client.Client, cause string) {
	t.Helper()
	ctx := ctxFor(t)
	_, err := c.ListOffset(ctx, topic, 0, -1)
	assertServerError(t, err, fmt.Sprintf("failed to list offset, topic: %s, partition: 0, err: %s", topic, cause))
	_, err = c.Fetch(ctx, topic, 0, 0)
	assertServerError(t, err, fmt.Sprintf("failed to fetch message, topic: %s, partition: 0, err: %s", topic, cause))
	if state, err := c.Ping(ctx, []byte("still there")); err != nil || string(state) != "still there" {
		t.Fatalf("ping after the failure: %q, %v", state, err)
	}
}

func assertServerError(t *testing.T, err error, want string) {
	t.Helper()
	var se *client.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want error_resp %q", err, want)
	}
	if se.Message != want {
		t.Fatalf("error_resp %q\nwant           %q", se.Message, want)
	}
}

func TestSASLOverTLS(t *testing.T) {
	p := newPKI(t)
	for _, mech := range []string{config.MechanismPlain, config.MechanismScramSHA256, config.MechanismScramSHA512} {
		t.Run(mech, func(t *testing.T) {
			k := testkit.Kafka(t, kfake.TLS(testkit.BrokerTLS(p.brokerCert, nil)),
				kfake.EnableSASL(), kfake.Superuser(mech, user, password), kfake.SeedTopics(1, topic))
			testkit.Produce(t, k.ListenAddrs(), topic, 0, testkit.Numbered(3),
				kgo.DialTLSConfig(&tls.Config{RootCAs: p.ca.Pool()}), kgo.SASL(saslFor(mech, user, password)))
			s := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(),
				tlsYAML("ca_file: "+p.caFile)+saslYAML(fmt.Sprintf("mechanism: %s, username: %s, password: %s", mech, user, password)), ""), nil)
			c := s.Dial(t, "kafka")
			assertFetchOK(t, c, "v0", "v1", "v2")
			end, err := c.ListOffset(ctxFor(t), topic, 0, -1)
			if err != nil || end != 3 {
				t.Fatalf("list offset: %d, %v; want 3", end, err)
			}
		})
	}
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	k := testkit.Kafka(t, kfake.TLS(testkit.BrokerTLS(p.brokerCert, p.ca)), kfake.SeedTopics(1, topic))
	testkit.Produce(t, k.ListenAddrs(), topic, 0, testkit.Numbered(2),
		kgo.DialTLSConfig(&tls.Config{RootCAs: p.ca.Pool(), Certificates: []tls.Certificate{p.clientCertGW}}))
	certFile, keyFile := testkit.WriteKeyPair(t, p.clientCertGW, p.dir, "gateway")
	untrustedCert, untrustedKey := testkit.WriteKeyPair(t, p.otherCA.ClientCert(t, "gateway"), p.dir, "untrusted")
	clusters := map[string]string{
		"with-cert":      tlsYAML(fmt.Sprintf("ca_file: %s, cert_file: %s, key_file: %s", p.caFile, certFile, keyFile)),
		"without-cert":   tlsYAML("ca_file: " + p.caFile),
		"untrusted-cert": tlsYAML(fmt.Sprintf("ca_file: %s, cert_file: %s, key_file: %s", p.caFile, untrustedCert, untrustedKey)),
	}
	s := testkit.StartServer(t, clustersYAML(k.ListenAddrs(), clusters), nil)
	assertFetchOK(t, s.Dial(t, "with-cert"), "v0", "v1")
	for _, name := range []string{"without-cert", "untrusted-cert"} {
		t.Run(name, func(t *testing.T) {
			c := s.Dial(t, name)
			msg := fetchError(t, c)
			if !strings.HasPrefix(msg, "failed to fetch message, topic: events, partition: 0, err: tls: broker refused ") {
				t.Fatalf("error_resp %q does not say the broker refused the TLS connection", msg)
			}
			if _, err := c.Ping(ctxFor(t), nil); err != nil {
				t.Fatalf("ping after the failure: %v", err)
			}
		})
	}
	assertFetchOK(t, s.Dial(t, "with-cert"), "v0", "v1")
}

// clustersYAML returns a document with one cluster per entry of clusters,
// all on brokers, each with its extra lines.
func clustersYAML(brokers []string, clusters map[string]string) string {
	var b strings.Builder
	b.WriteString("kafka_clusters:\n")
	for name, extra := range clusters {
		fmt.Fprintf(&b, "  %s:\n    brokers: [%s]\n%s", name, strings.Join(brokers, ", "), extra)
	}
	return b.String()
}

// fetchError runs a fetch that must fail and returns its error_resp text.
func fetchError(t *testing.T, c *client.Client) string {
	t.Helper()
	_, err := c.Fetch(ctxFor(t), topic, 0, 0)
	var se *client.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("fetch: got %v, want an error_resp", err)
	}
	return se.Message
}

// TestConnectionFailures covers each way of failing to reach an
// authenticated, encrypted Kafka: each answers an error_resp naming the
// cause, the session stays usable and the server keeps serving.
func TestConnectionFailures(t *testing.T) {
	p := newPKI(t)
	const mech = config.MechanismScramSHA256
	secure := testkit.Kafka(t, kfake.TLS(testkit.BrokerTLS(p.brokerCert, nil)),
		kfake.EnableSASL(), kfake.Superuser(mech, user, password), kfake.SeedTopics(1, topic))
	testkit.Produce(t, secure.ListenAddrs(), topic, 0, testkit.Numbered(1),
		kgo.DialTLSConfig(&tls.Config{RootCAs: p.ca.Pool()}), kgo.SASL(saslFor(mech, user, password)))
	wrongNameCert := testkit.Kafka(t, kfake.TLS(testkit.BrokerTLS(p.ca.ServerCert(t, "kafka.example.com"), nil)), kfake.SeedTopics(1, topic))
	plaintext := testkit.Kafka(t, kfake.SeedTopics(1, topic))

	goodSASL := saslYAML(fmt.Sprintf("mechanism: %s, username: %s, password: %s", mech, user, password))
	goodTLS := tlsYAML("ca_file: " + p.caFile)
	cases := []struct {
		name, cause string
		brokers     []string
		extra       string
	}{
		{"wrong password", "authentication failed", secure.ListenAddrs(), goodTLS + saslYAML(fmt.Sprintf("mechanism: %s, username: %s, password: wrong", mech, user))},
		{"unknown user", "authentication failed", secure.ListenAddrs(), goodTLS + saslYAML(fmt.Sprintf("mechanism: %s, username: nobody, password: %s", mech, password))},
		{"wrong mechanism", "authentication failed", secure.ListenAddrs(), goodTLS + saslYAML(fmt.Sprintf("mechanism: PLAIN, username: %s, password: %s", user, password))},
		{"no sasl", "authentication failed: broker requires SASL", secure.ListenAddrs(), goodTLS},
		{"wrong ca", "tls: failed to verify broker certificate: x509: certificate signed by unknown authority", secure.ListenAddrs(), tlsYAML("ca_file: "+p.otherCAFile) + goodSASL},
		{"wrong server name", "tls: failed to verify broker certificate: x509: certificate is not valid for the broker name", secure.ListenAddrs(), tlsYAML("ca_file: "+p.caFile+", server_name: kafka.example.com") + goodSASL},
		{"broker certificate for another name", "tls: failed to verify broker certificate: x509: certificate is not valid for the broker name", wrongNameCert.ListenAddrs(), goodTLS},
		{"plaintext client, tls broker", "broker closed the connection: TLS required", secure.ListenAddrs(), goodSASL},
		{"tls client, plaintext broker", "tls: broker did not answer the TLS handshake (is it a plaintext listener?)", plaintext.ListenAddrs(), goodTLS},
	}
	var doc strings.Builder
	fmt.Fprintf(&doc, "kafka_clusters:\n  good:\n    brokers: [%s]\n%s%s", strings.Join(secure.ListenAddrs(), ", "), goodTLS, goodSASL)
	for i, tc := range cases {
		fmt.Fprintf(&doc, "  bad%d:\n    brokers: [%s]\n%s", i, strings.Join(tc.brokers, ", "), tc.extra)
	}
	s := testkit.StartServer(t, doc.String(), nil)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := s.Dial(t, fmt.Sprintf("bad%d", i))
			assertFailsWith(t, c, tc.cause)
			// The server stays healthy: a new session reads Kafka.
			assertFetchOK(t, s.Dial(t, "good"), "v0")
		})
	}
}

// TestBrokerGone closes the Kafka cluster under a session, including while a
// fetch waits at the end of the log.
func TestBrokerGone(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, topic))
	other := testkit.Kafka(t, kfake.SeedTopics(1, topic))
	testkit.Produce(t, k.ListenAddrs(), topic, 0, testkit.Numbered(2))
	testkit.Produce(t, other.ListenAddrs(), topic, 0, testkit.Numbered(1))
	s := testkit.StartServer(t, clustersYAML(k.ListenAddrs(), map[string]string{"kafka": "    fetch_max_wait: 3s\n"})+
		fmt.Sprintf("  other:\n    brokers: [%s]\n", strings.Join(other.ListenAddrs(), ", ")), nil)
	c := s.Dial(t, "kafka")
	assertFetchOK(t, c, "v0", "v1")

	// The broker closes while it holds a fetch at the end of the log (a
	// control function holds it until Close wakes it, then fails it).
	held := make(chan struct{})
	closed := make(chan struct{})
	var holding sync.Once
	k.ControlKey(int16(kmsg.Fetch), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		for _, tp := range req.(*kmsg.FetchRequest).Topics {
			for _, p := range tp.Partitions {
				if p.FetchOffset >= 2 {
					holding.Do(func() { close(held) })
					k.SleepControl(func() { <-closed })
					return nil, errors.New("broker closed"), true
				}
			}
		}
		return nil, nil, false
	})
	waiting := make(chan error, 1)
	go func() {
		_, err := c.Fetch(ctxFor(t), topic, 0, 2) // at the end: waits up to 3s
		waiting <- err
	}()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatal("no fetch at the end of the log reached the broker")
	}
	k.Close() // wakes the held fetch, which then fails
	close(closed)

	const want = "failed to fetch message, topic: events, partition: 0, err: broker unreachable"
	for _, err := range []error{<-waiting, func() error { _, err := c.Fetch(ctxFor(t), topic, 0, 0); return err }()} {
		var se *client.ServerError
		if !errors.As(err, &se) || !strings.HasPrefix(se.Message, want) {
			t.Fatalf("got %v, want an error_resp starting %q", err, want)
		}
	}
	_, err := c.ListOffset(ctxFor(t), topic, 0, -1)
	var se *client.ServerError
	if !errors.As(err, &se) || !strings.HasPrefix(se.Message, "failed to list offset, topic: events, partition: 0, err: broker unreachable") {
		t.Fatalf("list offset: got %v, want broker unreachable", err)
	}
	if _, err := c.Ping(ctxFor(t), nil); err != nil {
		t.Fatalf("ping after the broker left: %v", err)
	}
	assertFetchOK(t, s.Dial(t, "other"), "v0")
}

// TestTLSRotation replaces the CA file and the client certificate files
// under a running server: new broker connections use the new files.
func TestTLSRotation(t *testing.T) {
	p := newPKI(t)
	t.Run("ca_file", func(t *testing.T) {
		// The broker's certificate comes from the other CA; the gateway
		// trusts only the first until its ca_file is replaced.
		k := testkit.Kafka(t, kfake.TLS(testkit.BrokerTLS(p.otherCA.ServerCert(t, testkit.LoopbackNames...), nil)), kfake.SeedTopics(1, topic))
		testkit.Produce(t, k.ListenAddrs(), topic, 0, testkit.Numbered(1), kgo.DialTLSConfig(&tls.Config{RootCAs: p.otherCA.Pool()}))
		caFile := p.ca.WriteFile(t, t.TempDir(), "rotating-ca.pem")
		s := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), tlsYAML("ca_file: "+caFile), ""), nil)
		c := s.Dial(t, "kafka")
		assertFailsWith(t, c, "tls: failed to verify broker certificate: x509: certificate signed by unknown authority")

		p.otherCA.WriteFile(t, filepath.Dir(caFile), filepath.Base(caFile))
		assertFetchOK(t, c, "v0")
	})
	t.Run("client certificate", func(t *testing.T) {
		// The broker accepts client certificates of the other CA only.
		k := testkit.Kafka(t, kfake.TLS(testkit.BrokerTLS(p.brokerCert, p.otherCA)), kfake.SeedTopics(1, topic))
		accepted := p.otherCA.ClientCert(t, "gateway")
		testkit.Produce(t, k.ListenAddrs(), topic, 0, testkit.Numbered(1),
			kgo.DialTLSConfig(&tls.Config{RootCAs: p.ca.Pool(), Certificates: []tls.Certificate{accepted}}))
		dir := t.TempDir()
		certFile, keyFile := testkit.WriteKeyPair(t, p.clientCertGW, dir, "client")
		s := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(),
			tlsYAML(fmt.Sprintf("ca_file: %s, cert_file: %s, key_file: %s", p.caFile, certFile, keyFile)), ""), nil)
		c := s.Dial(t, "kafka")
		if msg := fetchError(t, c); !strings.Contains(msg, "err: tls: broker refused ") {
			t.Fatalf("with the old certificate: error_resp %q, want the broker's refusal", msg)
		}

		testkit.WriteKeyPair(t, accepted, dir, "client")
		assertFetchOK(t, c, "v0")
	})
	t.Run("unreadable files keep the last good ones", func(t *testing.T) {
		k := testkit.Kafka(t, kfake.TLS(testkit.BrokerTLS(p.brokerCert, nil)), kfake.SeedTopics(1, topic))
		testkit.Produce(t, k.ListenAddrs(), topic, 0, testkit.Numbered(1), kgo.DialTLSConfig(&tls.Config{RootCAs: p.ca.Pool()}))
		caFile := p.ca.WriteFile(t, t.TempDir(), "ca.pem")
		log := &testkit.LogBuffer{}
		s := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), tlsYAML("ca_file: "+caFile), ""), log)
		c := s.Dial(t, "kafka")
		// The session's client connects to brokers on first use, which
		// is after the file broke.
		if err := os.WriteFile(caFile, []byte("half-written"), 0o600); err != nil {
			t.Fatal(err)
		}
		assertFetchOK(t, c, "v0")
		if !strings.Contains(log.String(), "cannot reload tls files") {
			t.Fatalf("no warning about the unreadable ca_file in the log:\n%s", log.String())
		}
	})
}

func TestPasswordSources(t *testing.T) {
	const mech = config.MechanismScramSHA512
	k := testkit.Kafka(t, kfake.EnableSASL(), kfake.Superuser(mech, user, password), kfake.SeedTopics(1, topic))
	testkit.Produce(t, k.ListenAddrs(), topic, 0, testkit.Numbered(1), kgo.SASL(saslFor(mech, user, password)))
	passwordFile := filepath.Join(t.TempDir(), "kafka-password")
	if err := os.WriteFile(passwordFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PUBSUB_TEST_KAFKA_PASSWORD", password)
	sources := map[string]string{
		"file": "password_file: " + passwordFile,
		"env":  "password_env: PUBSUB_TEST_KAFKA_PASSWORD",
	}
	clusters := map[string]string{}
	for name, source := range sources {
		clusters[name] = saslYAML(fmt.Sprintf("mechanism: %s, username: %s, %s", mech, user, source))
	}
	s := testkit.StartServer(t, clustersYAML(k.ListenAddrs(), clusters), nil)
	for name := range sources {
		t.Run(name, func(t *testing.T) { assertFetchOK(t, s.Dial(t, name), "v0") })
	}
}

// TestTopicAllowList checks exact names and globs, and that a denied topic
// is refused without any request reaching Kafka.
func TestTopicAllowList(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "orders", "audit-eu", "payments"))
	for _, tp := range []string{"orders", "audit-eu", "payments"} {
		testkit.Produce(t, k.ListenAddrs(), tp, 0, []testkit.Record{{Value: tp}})
	}
	denied := []string{"payments", "audit", "orders-2", "missing"}
	var deniedSeen atomic.Int32
	for _, key := range []kmsg.Key{kmsg.Metadata, kmsg.ListOffsets, kmsg.Fetch} {
		k.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
			k.KeepControl()
			for _, tp := range requestTopics(req) {
				if slices.Contains(denied, tp) {
					deniedSeen.Add(1)
				}
			}
			return nil, nil, false
		})
	}
	s := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), `    topics: ["orders", "audit-*"]`+"\n", ""), nil)
	c := s.Dial(t, "kafka")
	ctx := ctxFor(t)
	for _, tp := range []string{"orders", "audit-eu"} {
		msgs, err := c.Fetch(ctx, tp, 0, 0)
		if err != nil || len(msgs) != 1 || string(msgs[0].Value) != tp {
			t.Fatalf("allowed topic %s: %v, %v", tp, msgs, err)
		}
	}
	for _, tp := range denied {
		_, err := c.Fetch(ctx, tp, 0, 0)
		assertServerError(t, err, fmt.Sprintf("failed to fetch message, topic: %s, partition: 0, err: topic not allowed", tp))
		_, err = c.ListOffset(ctx, tp, 0, -2)
		assertServerError(t, err, fmt.Sprintf("failed to list offset, topic: %s, partition: 0, err: topic not allowed", tp))
	}
	if n := deniedSeen.Load(); n != 0 {
		t.Fatalf("Kafka saw %d requests for the denied topic", n)
	}

	// An empty list allows nothing.
	none := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "    topics: []\n", ""), nil).Dial(t, "kafka")
	_, err := none.Fetch(ctx, "orders", 0, 0)
	assertServerError(t, err, "failed to fetch message, topic: orders, partition: 0, err: topic not allowed")
}

// requestTopics returns the topic names a Metadata, ListOffsets or Fetch
// request names.
func requestTopics(req kmsg.Request) []string {
	var topics []string
	switch r := req.(type) {
	case *kmsg.MetadataRequest:
		for _, t := range r.Topics {
			if t.Topic != nil {
				topics = append(topics, *t.Topic)
			}
		}
	case *kmsg.ListOffsetsRequest:
		for _, t := range r.Topics {
			topics = append(topics, t.Topic)
		}
	case *kmsg.FetchRequest:
		for _, t := range r.Topics {
			topics = append(topics, t.Topic)
		}
	}
	return topics
}

// TestSecretsNeverLogged runs sessions with the right and wrong passwords,
// for each mechanism and password source, with debug logging (franz-go's
// included), and looks for the passwords in the log, the error replies and
// the printed configuration.
func TestSecretsNeverLogged(t *testing.T) {
	const wrongPassword = "wrong-pw-4b1d-also-secret"
	p := newPKI(t)
	k := testkit.Kafka(t, kfake.TLS(testkit.BrokerTLS(p.brokerCert, nil)), kfake.EnableSASL(),
		kfake.User(config.MechanismPlain, user, password), kfake.User(config.MechanismScramSHA512, user, password),
		kfake.Superuser(config.MechanismScramSHA256, "admin", "admin-pw"), kfake.SeedTopics(1, topic))
	passwordFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(passwordFile, []byte(wrongPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PUBSUB_TEST_KAFKA_PASSWORD", password)
	clusters := map[string]string{
		"plain":        saslYAML(fmt.Sprintf("mechanism: PLAIN, username: %s, password: %s", user, password)),
		"plain-wrong":  saslYAML(fmt.Sprintf("mechanism: PLAIN, username: %s, password: %s", user, wrongPassword)),
		"scram":        saslYAML(fmt.Sprintf("mechanism: SCRAM-SHA-512, username: %s, password_env: PUBSUB_TEST_KAFKA_PASSWORD", user)),
		"scram-wrong":  saslYAML(fmt.Sprintf("mechanism: SCRAM-SHA-512, username: %s, password_file: %s", user, passwordFile)),
		"unknown-user": saslYAML(fmt.Sprintf("mechanism: SCRAM-SHA-256, username: nobody, password: %s", password)),
	}
	for name := range clusters {
		clusters[name] += tlsYAML("ca_file: " + p.caFile)
	}
	doc := clustersYAML(k.ListenAddrs(), clusters)
	log := &testkit.LogBuffer{}
	s := testkit.StartServer(t, doc, log)

	var seen []string
	for name := range clusters {
		c := s.Dial(t, name)
		ctx := ctxFor(t)
		_, err := c.ListOffset(ctx, topic, 0, -1)
		if strings.HasSuffix(name, "-wrong") || name == "unknown-user" {
			assertServerError(t, err, "failed to list offset, topic: events, partition: 0, err: authentication failed")
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := c.Fetch(ctx, topic, 0, 0); err != nil {
			seen = append(seen, err.Error())
		}
	}
	parsed, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for name, c := range parsed.KafkaClusters {
		resolved, err := c.WithPassword(nil)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, fmt.Sprintf("%s: %v %+v %#v %v %+v %#v", name, c, *c, *c, resolved.SASL, *resolved.SASL, *resolved.SASL))
	}
	pooled, err := s.Pool.Acquire(mustResolve(t, parsed.KafkaClusters["plain"]))
	if err != nil {
		t.Fatal(err)
	}
	seen = append(seen, fmt.Sprintf("%+v %#v", *pooled.Config().SASL, *pooled.Config().SASL))
	pooled.Release()

	logged := log.String()
	for _, want := range []string{"level=DEBUG msg=\"kafka: beginning sasl authentication\"", "mechanism=SCRAM-SHA-512"} {
		if !strings.Contains(logged, want) {
			t.Fatalf("the log does not show franz-go's debug output (%q); the test would prove nothing:\n%s", want, logged)
		}
	}
	all := logged + strings.Join(seen, "\n")
	for _, secret := range []string{password, wrongPassword} {
		if strings.Contains(all, secret) {
			t.Fatalf("a password appears in the logs, errors or printed configuration:\n%s", all)
		}
	}
}

func mustResolve(t *testing.T, c *config.KafkaCluster) *config.KafkaCluster {
	t.Helper()
	r, err := c.WithPassword(nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestInsecureSettingsWarn checks that settings exposing the password or
// skipping certificate checks are logged when a client is created, and
// that verify: false does connect to a broker nobody vouches for.
func TestInsecureSettingsWarn(t *testing.T) {
	p := newPKI(t)
	plainSASL := testkit.Kafka(t, kfake.EnableSASL(), kfake.Superuser(config.MechanismPlain, user, password), kfake.SeedTopics(1, topic))
	untrusted := testkit.Kafka(t, kfake.TLS(testkit.BrokerTLS(p.otherCA.ServerCert(t, "elsewhere.example.com"), nil)), kfake.SeedTopics(1, topic))
	log := &testkit.LogBuffer{}
	s := testkit.StartServer(t, clustersYAML(plainSASL.ListenAddrs(), map[string]string{
		"clear": saslYAML(fmt.Sprintf("mechanism: PLAIN, username: %s, password: %s", user, password)),
	})+fmt.Sprintf("  unverified:\n    brokers: [%s]\n%s", strings.Join(untrusted.ListenAddrs(), ", "), tlsYAML("verify: false")), log)
	for name, warning := range map[string]string{
		"clear":      "SASL PLAIN without TLS sends the password in clear text",
		"unverified": "tls.verify is false: broker certificates are not checked",
	} {
		if _, err := s.Dial(t, name).ListOffset(ctxFor(t), topic, 0, -1); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !strings.Contains(log.String(), warning) {
			t.Fatalf("%s: no warning %q in the log", name, warning)
		}
	}
}

// TestAuthenticationErrorCode covers brokers that, unlike kfake, answer bad
// credentials with SASL_AUTHENTICATION_FAILED rather than a closed
// connection (Apache Kafka does).
func TestAuthenticationErrorCode(t *testing.T) {
	const mech = config.MechanismScramSHA256
	k := testkit.Kafka(t, kfake.EnableSASL(), kfake.Superuser(mech, user, password), kfake.SeedTopics(1, topic))
	k.ControlKey(int16(kmsg.SASLAuthenticate), func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		resp := req.(*kmsg.SASLAuthenticateRequest).ResponseKind().(*kmsg.SASLAuthenticateResponse)
		resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
		resp.ErrorMessage = kmsg.StringPtr("Authentication failed during authentication due to invalid credentials with SASL mechanism " + mech)
		return resp, nil, true
	})
	s := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(),
		saslYAML(fmt.Sprintf("mechanism: %s, username: %s, password: %s", mech, user, password)), ""), nil)
	assertFailsWith(t, s.Dial(t, "kafka"), "authentication failed")
}
