package config_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/testkit"
)

const secretValue = "s3cr3t-value-never-printed"

func clusterDoc(extra string) string {
	return "kafka_clusters:\n  kafka:\n    brokers: [\"127.0.0.1:9092\"]\n" + extra
}

// TestSecurityValidation checks that bad TLS and SASL settings fail at load
// with a message naming the key, and never quoting a password.
func TestSecurityValidation(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t, "test CA")
	caFile := ca.WriteFile(t, dir, "ca.pem")
	certFile, keyFile := testkit.WriteKeyPair(t, ca.ClientCert(t, "gateway"), dir, "client")
	_, otherKeyFile := testkit.WriteKeyPair(t, ca.ClientCert(t, "other"), dir, "other")
	notPEM := filepath.Join(dir, "not-a-cert.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	cases := []struct {
		name, extra, want string
	}{
		{"tls keys without enabled", "    tls: {ca_file: " + caFile + "}\n",
			"config: kafka_clusters.kafka.tls.enabled: must be true when other tls keys are set"},
		{"cert without key", "    tls: {enabled: true, cert_file: " + certFile + "}\n",
			"config: kafka_clusters.kafka.tls.cert_file: cert_file and key_file must be given together"},
		{"key without cert", "    tls: {enabled: true, key_file: " + keyFile + "}\n",
			"config: kafka_clusters.kafka.tls.cert_file: cert_file and key_file must be given together"},
		{"missing ca_file", "    tls: {enabled: true, ca_file: " + missing + "}\n",
			"config: kafka_clusters.kafka.tls.ca_file: open " + missing + ": no such file or directory"},
		{"ca_file without certificates", "    tls: {enabled: true, ca_file: " + notPEM + "}\n",
			"config: kafka_clusters.kafka.tls.ca_file: " + notPEM + ": no PEM certificate found"},
		{"key of another certificate", fmt.Sprintf("    tls: {enabled: true, cert_file: %s, key_file: %s}\n", certFile, otherKeyFile),
			"config: kafka_clusters.kafka.tls.cert_file: " + certFile + " and key_file " + otherKeyFile + ": tls: private key does not match public key"},
		{"missing cert_file", fmt.Sprintf("    tls: {enabled: true, cert_file: %s, key_file: %s}\n", missing, keyFile),
			"config: kafka_clusters.kafka.tls.cert_file: " + missing},
		{"unknown tls key", "    tls: {enabled: true, insecure: true}\n",
			`unknown key "insecure"`},
		{"verify not a boolean", "    tls: {enabled: true, verify: sometimes}\n",
			"verify: expected bool"},
		{"unknown mechanism", "    sasl: {mechanism: GSSAPI, username: app, password: " + secretValue + "}\n",
			`config: kafka_clusters.kafka.sasl.mechanism: "GSSAPI" is not PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM`},
		{"no mechanism", "    sasl: {username: app, password: " + secretValue + "}\n",
			"config: kafka_clusters.kafka.sasl.mechanism: required (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM)"},
		{"no username", "    sasl: {mechanism: PLAIN, password: " + secretValue + "}\n",
			"config: kafka_clusters.kafka.sasl.username: required"},
		{"no password source", "    sasl: {mechanism: SCRAM-SHA-256, username: app}\n",
			"config: kafka_clusters.kafka.sasl.password: exactly one of password, password_file, password_env, password_secret is required"},
		{"two password sources", "    sasl: {mechanism: SCRAM-SHA-512, username: app, password: " + secretValue + ", password_env: KAFKA_PASSWORD}\n",
			"config: kafka_clusters.kafka.sasl.password: exactly one of password, password_file, password_env, password_secret is required"},
		{"unknown sasl key", "    sasl: {mechanism: PLAIN, username: app, passwd: " + secretValue + "}\n",
			`unknown key "passwd"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(clusterDoc(tc.extra)))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.extra)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\ndoes not contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secretValue) {
				t.Fatalf("error %q quotes the password", err)
			}
		})
	}
}

func TestValidSecurityDefaults(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t, "test CA")
	caFile := ca.WriteFile(t, dir, "ca.pem")
	certFile, keyFile := testkit.WriteKeyPair(t, ca.ClientCert(t, "gateway"), dir, "client")
	doc, err := config.Parse([]byte(clusterDoc(fmt.Sprintf(
		"    tls: {enabled: true, ca_file: %s, cert_file: %s, key_file: %s}\n    sasl: {mechanism: SCRAM-SHA-256, username: app, password: %s}\n",
		caFile, certFile, keyFile, secretValue))))
	if err != nil {
		t.Fatal(err)
	}
	c := doc.KafkaClusters["kafka"]
	if !c.TLS.VerifyEnabled() {
		t.Error("certificate verification is off by default")
	}
	if c.Topics != nil {
		t.Errorf("topics default to %q, want absent (all topics)", c.Topics)
	}
	files, err := c.TLS.LoadFiles()
	if err != nil {
		t.Fatal(err)
	}
	if files.RootCAs == nil || files.Certificate == nil || files.Certificate.Leaf.Subject.CommonName != "gateway" {
		t.Fatalf("LoadFiles = %+v", files)
	}
	s := doc.Session
	if s.MaxSessions != config.DefaultMaxSessions || s.MaxFrameBytes != config.DefaultMaxFrameBytes ||
		s.MaxInFlight != config.DefaultMaxInFlight || s.IdleTimeout.Duration() != config.DefaultIdleTimeout ||
		s.WriteTimeout.Duration() != config.DefaultWriteTimeout || c.FetchMaxBytes != config.DefaultFetchMaxBytes {
		t.Fatalf("defaults not filled in: session %+v, fetch_max_bytes %d", s, c.FetchMaxBytes)
	}
}

func TestPasswordSourcesResolve(t *testing.T) {
	dir := t.TempDir()
	passwordFile := filepath.Join(dir, "password")
	if err := os.WriteFile(passwordFile, []byte(secretValue+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(dir, "empty")
	if err := os.WriteFile(emptyFile, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PUBSUB_TEST_PASSWORD", secretValue)
	secrets := func(name string) (string, bool) {
		if name == "kafka-app" {
			return secretValue, true
		}
		return "", false
	}
	resolved := []struct {
		name, source string
		lookup       func(string) (string, bool)
	}{
		{"inline", "password: " + secretValue, nil},
		{"file, line end trimmed", "password_file: " + passwordFile, nil},
		{"env", "password_env: PUBSUB_TEST_PASSWORD", nil},
		{"envoy secret", "password_secret: kafka-app", secrets},
	}
	for _, tc := range resolved {
		t.Run(tc.name, func(t *testing.T) {
			c := parseSASL(t, tc.source)
			parsed := *c.SASL
			r, err := c.WithPassword(tc.lookup)
			if err != nil {
				t.Fatal(err)
			}
			if r.SASL.Password.Reveal() != secretValue {
				t.Fatalf("resolved a password of %d bytes, want the configured one", len(r.SASL.Password.Reveal()))
			}
			if *c.SASL != parsed {
				t.Fatal("WithPassword changed the parsed configuration")
			}
		})
	}

	failing := []struct {
		name, source, want string
		lookup             func(string) (string, bool)
	}{
		{"missing file", "password_file: " + filepath.Join(dir, "nope"), "sasl.password_file: open ", nil},
		{"empty file", "password_file: " + emptyFile, "sasl.password: empty password", nil},
		{"unset env", "password_env: PUBSUB_TEST_UNSET", "sasl.password_env: environment variable PUBSUB_TEST_UNSET is not set", nil},
		{"envoy secret without Envoy", "password_secret: kafka-app", `sasl.password_secret: secret "kafka-app" needs Envoy's secret store`, nil},
		{"unknown envoy secret", "password_secret: other", `sasl.password_secret: secret "other" not found`, secrets},
	}
	for _, tc := range failing {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseSASL(t, tc.source).WithPassword(tc.lookup)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func parseSASL(t *testing.T, source string) *config.KafkaCluster {
	t.Helper()
	doc, err := config.Parse([]byte(clusterDoc("    sasl: {mechanism: PLAIN, username: app, " + source + "}\n")))
	if err != nil {
		t.Fatal(err)
	}
	return doc.KafkaClusters["kafka"]
}

// TestSecretNeverPrinted formats a parsed document every way a log line or
// an error might.
func TestSecretNeverPrinted(t *testing.T) {
	doc, err := config.Parse([]byte(clusterDoc("    sasl: {mechanism: PLAIN, username: app, password: " + secretValue + "}\n")))
	if err != nil {
		t.Fatal(err)
	}
	c := doc.KafkaClusters["kafka"]
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	printed := fmt.Sprintf("%v %+v %#v | %v %+v %#v | %v %+v %#v | %s %q %x | %s",
		doc, *doc, doc, c, *c, *c, c.SASL, *c.SASL, *c.SASL,
		c.SASL.Password, c.SASL.Password, c.SASL.Password, js)
	if strings.Contains(printed, secretValue) || strings.Contains(printed, fmt.Sprintf("%x", secretValue)) {
		t.Fatalf("the password is printed: %s", printed)
	}
	if !strings.Contains(printed, "[redacted]") {
		t.Fatalf("the password is not shown as redacted: %s", printed)
	}
}
