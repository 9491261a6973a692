package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoy-pubsub/gateway/config"
)

func TestCloudSASLKeysAreStrict(t *testing.T) {
	const prefix = "config: kafka_clusters.kafka.sasl"
	for _, c := range []struct{ name, sasl, want string }{
		{"token file and endpoint", "{mechanism: OAUTHBEARER, token_file: /t, token_endpoint: https://id/token}", prefix + ": token_file and token_endpoint exclude each other"},
		{"no token source", "{mechanism: OAUTHBEARER}", prefix + ": OAUTHBEARER needs token_file or token_endpoint"},
		{"username with OAUTHBEARER", "{mechanism: OAUTHBEARER, token_file: /t, username: app}", prefix + ".username: not used by mechanism OAUTHBEARER"},
		{"client id with a token file", "{mechanism: OAUTHBEARER, token_file: /t, client_id: gw}", prefix + ".client_id: not used with token_file"},
		{"endpoint not a URL", "{mechanism: OAUTHBEARER, token_endpoint: 'id/token', client_id: gw, client_secret: s}", prefix + `.token_endpoint: "id/token" is not an http(s) URL`},
		{"no client id", "{mechanism: OAUTHBEARER, token_endpoint: https://id/token, client_secret: s}", prefix + ".client_id: required with token_endpoint"},
		{"no client secret", "{mechanism: OAUTHBEARER, token_endpoint: https://id/token, client_id: gw}", prefix + ".client_secret: exactly one of client_secret, client_secret_file, client_secret_env, client_secret_secret is required"},
		{"two client secrets", "{mechanism: OAUTHBEARER, token_endpoint: https://id/token, client_id: gw, client_secret: s, client_secret_env: E}", prefix + ".client_secret: exactly one of"},
		{"password with MSK IAM", "{mechanism: AWS_MSK_IAM, password: p}", prefix + ".password: not used by mechanism AWS_MSK_IAM"},
		{"token file with MSK IAM", "{mechanism: AWS_MSK_IAM, token_file: /t}", prefix + ".token_file: not used by mechanism AWS_MSK_IAM"},
		{"token file with SCRAM", "{mechanism: SCRAM-SHA-256, username: u, password: p, token_file: /t}", prefix + ".token_file: only for mechanism OAUTHBEARER"},
		{"unknown key", "{mechanism: OAUTHBEARER, token_file: /t, token_url: x}", "token_url"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Parse([]byte(clusterDoc("    sasl: " + c.sasl + "\n")))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
		})
	}
	for _, ok := range []string{
		"{mechanism: OAUTHBEARER, token_file: /var/run/token}",
		"{mechanism: OAUTHBEARER, token_endpoint: https://id.example.com/token, client_id: gw, client_secret_secret: oidc, scope: 'kafka openid'}",
		"{mechanism: AWS_MSK_IAM}",
	} {
		if _, err := config.Parse([]byte(clusterDoc("    sasl: " + ok + "\n"))); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}

func TestOIDCClientSecretIsResolvedFromItsSource(t *testing.T) {
	const secret = "oidc-client-secret"
	file := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PUBSUB_TEST_CLIENT_SECRET", secret)
	secrets := func(name string) (string, bool) { return secret, name == "oidc" }
	for _, c := range []struct {
		source string
		lookup func(string) (string, bool)
	}{
		{"client_secret: " + secret, nil},
		{"client_secret_file: " + file, nil},
		{"client_secret_env: PUBSUB_TEST_CLIENT_SECRET", nil},
		{"client_secret_secret: oidc", secrets},
	} {
		doc, err := config.Parse([]byte(clusterDoc("    sasl: {mechanism: OAUTHBEARER, token_endpoint: https://id/token, client_id: gw, " + c.source + "}\n")))
		if err != nil {
			t.Fatal(err)
		}
		r, err := doc.KafkaClusters["kafka"].WithPassword(c.lookup)
		if err != nil {
			t.Fatalf("%s: %v", c.source, err)
		}
		if r.SASL.ClientSecret.Reveal() != secret {
			t.Errorf("%s: resolved %d bytes, want the configured secret", c.source, len(r.SASL.ClientSecret.Reveal()))
		}
	}
	doc, err := config.Parse([]byte(clusterDoc("    sasl: {mechanism: OAUTHBEARER, token_endpoint: https://id/token, client_id: gw, client_secret_secret: oidc}\n")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := doc.KafkaClusters["kafka"].WithPassword(nil); err == nil || !strings.Contains(err.Error(), "needs Envoy's secret store") {
		t.Errorf("an Envoy secret without Envoy: %v", err)
	}
}
