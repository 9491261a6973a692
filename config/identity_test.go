package config

import (
	"slices"
	"strings"
	"testing"
)

func TestIdentityAndAccessParse(t *testing.T) {
	d, err := Parse([]byte(`
identity:
  required: true
  jwt: {jwks_uri: "https://id.example.com/jwks.json", issuer: "https://id.example.com", audiences: [pubsub]}
  envoy_jwt_metadata: jwt_payload
kafka_clusters:
  kafka:
    brokers: ["k:9092"]
    access:
      - read: ["user.{sub}"]
      - read: ["orders"]
        records: {headers: {tenant: "{tenant}"}}
      - produce: ["rooms.{rooms}"]
        records: {headers: {sender: "{sub}"}, key: "{sub}"}
      - groups: ["g-{sub}"]
`))
	if err != nil {
		t.Fatal(err)
	}
	id := d.Identity
	if !id.Required || id.JWT.Issuer != "https://id.example.com" || !slices.Equal(id.JWT.Audiences, []string{"pubsub"}) ||
		id.EnvoyJWTMetadata != "jwt_payload" || id.JWT.JWKSRefreshInterval.Duration() != DefaultJWKSRefreshInterval {
		t.Fatalf("identity: %+v %+v", id, id.JWT)
	}
	rules := d.KafkaClusters["kafka"].Access
	if len(rules) != 4 || rules[1].Records.Headers["tenant"] != "{tenant}" || *rules[2].Records.Key != "{sub}" {
		t.Fatalf("access: %+v", rules)
	}
}

func TestIdentityAndAccessRefusedNamingTheKey(t *testing.T) {
	const jwt = "identity: {jwt: {jwks_file: /x.json}}\n"
	for doc, want := range map[string]string{
		"identity: {required: true}":                                            "identity: set jwt",
		"identity: {jwt: {issuer: x}}":                                          "identity.jwt.jwks_file",
		"identity: {jwt: {jwks_file: a, jwks_uri: 'https://x/'}}":               "identity.jwt.jwks_uri",
		"identity: {jwt: {jwks_uri: 'ftp://x/'}}":                               "identity.jwt.jwks_uri",
		"identity: {jwt: {jwks_file: a, audiences: ['']}}":                      "identity.jwt.audiences[0]",
		"identity: {jwt: {jwks_file: a, jwks_refresh_interval: -1s}}":           "identity.jwt.jwks_refresh_interval",
		"identity: {jwt: {jwks_file: a, algs: [HS256]}}":                        `unknown key "algs"`,
		"kafka_clusters: {k: {brokers: [a:1], access: [{read: [x], nope: 1}]}}": `unknown key "nope"`,
		// A rule naming a claim can never match without an identity.
		"kafka_clusters: {k: {brokers: [a:1], access: [{read: ['user.{sub}']}]}}":                           "kafka_clusters.k.access[0].read[0]: {sub} names a claim",
		"kafka_clusters: {k: {brokers: [a:1], access: [{groups: ['g-{sub}']}]}}":                            "kafka_clusters.k.access[0].groups[0]",
		"kafka_clusters: {k: {brokers: [a:1], access: [{read: [x], records: {headers: {t: '{tenant}'}}}]}}": "kafka_clusters.k.access[0].records.headers.t",
		"kafka_clusters: {k: {brokers: [a:1], access: [{produce: [x], records: {key: '{sub}'}}]}}":          "kafka_clusters.k.access[0].records.key",
		jwt + "kafka_clusters: {k: {brokers: [a:1], access: []}}":                                           "kafka_clusters.k.access: an empty list",
		jwt + "kafka_clusters: {k: {brokers: [a:1], access: [{}]}}":                                         "kafka_clusters.k.access[0]: a rule needs",
		jwt + "kafka_clusters: {k: {brokers: [a:1], access: [{groups: [g], records: {key: k}}]}}":           "kafka_clusters.k.access[0].records: records apply",
		jwt + "kafka_clusters: {k: {brokers: [a:1], access: [{read: [x], records: {}}]}}":                   "kafka_clusters.k.access[0].records: set headers or key",
		jwt + "kafka_clusters: {k: {brokers: [a:1], access: [{read: ['user.{sub']}]}}":                      "kafka_clusters.k.access[0].read[0]",
		jwt + "kafka_clusters: {k: {brokers: [a:1], access: [{read: ['user.{}']}]}}":                        "kafka_clusters.k.access[0].read[0]",
		jwt + "kafka_clusters: {k: {brokers: [a:1], access: [{read: ['user.}']}]}}":                         "kafka_clusters.k.access[0].read[0]",
		jwt + "kafka_clusters: {k: {brokers: [a:1], access: [{produce: ['[{sub}']}]}}":                      "kafka_clusters.k.access[0].produce[0]: bad pattern",
		jwt + "kafka_clusters: {k: {brokers: [a:1], access: [{read: [x]}, {read: ['']}]}}":                  "kafka_clusters.k.access[1].read[0]: empty pattern",
		jwt + "kafka_clusters: {k: {brokers: [a:1], access: [{read: [x], records: {headers: {'': v}}}]}}":   "kafka_clusters.k.access[0].records.headers.",
	} {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s:\n got %v\nwant an error containing %q", doc, err, want)
		}
	}
}

func TestRouteAccessRules(t *testing.T) {
	r, err := ParseRoute([]byte(`access: [{read: ["user.{sub}"]}]`))
	if err != nil || len(r.Access) != 1 {
		t.Fatalf("got %+v, %v", r, err)
	}
	if _, err := ParseRoute([]byte(`access: [{read: ["user.{sub"]}]`)); err == nil || !strings.Contains(err.Error(), "access[0].read[0]") {
		t.Fatalf("route accepted a bad placeholder: %v", err)
	}
}

func TestTemplateExpand(t *testing.T) {
	tpl, err := ParseTemplate("rooms.{org}.{rooms}")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tpl.Names(), []string{"org", "rooms"}) {
		t.Fatalf("names %v", tpl.Names())
	}
	values := map[string][]string{"org": {"acme"}, "rooms": {"a", "b*"}}
	upper := func(s string) string { return "<" + s + ">" }
	got, ok := tpl.Expand(func(n string) []string { return values[n] }, upper)
	if !ok || !slices.Equal(got, []string{"rooms.<acme>.<a>", "rooms.<acme>.<b*>"}) {
		t.Fatalf("expand: %v %v", got, ok)
	}
	if _, ok := tpl.Expand(func(n string) []string { return values[n] }, upper); !ok {
		t.Fatal("expand is not repeatable")
	}
	if got, ok := tpl.Expand(func(n string) []string { return nil }, upper); ok || got != nil {
		t.Fatalf("a missing claim expanded: %v", got)
	}
	many := make([]string, 100)
	for i := range many {
		many[i] = "v"
	}
	if _, ok := tpl.Expand(func(string) []string { return many }, upper); ok {
		t.Fatalf("expansion beyond %d accepted", MaxExpansions)
	}
	lit, _ := ParseTemplate("plain")
	if got, ok := lit.Expand(nil, upper); !ok || !slices.Equal(got, []string{"plain"}) {
		t.Fatalf("literal: %v %v", got, ok)
	}
}
