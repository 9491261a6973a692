package filter

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	udpatype "github.com/cncf/xds/go/udpa/type/v1"
	xdstype "github.com/cncf/xds/go/xds/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"
)

// document returns the Struct of a YAML document.
func document(t testing.TB, doc string) *structpb.Struct {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// typedStruct wraps a YAML document as Envoy passes plugin_config.
func typedStruct(t testing.TB, doc string) *anypb.Any {
	return mustAny(t, &xdstype.TypedStruct{Value: document(t, doc)})
}

func TestParseFilterConfigAcceptsTheThreeEncodings(t *testing.T) {
	const doc = "listener: /tmp/x.sock\nkafka_clusters: {kafka: {brokers: ['k:9092'], topics: [orders]}}\nsession: {max_frame_bytes: 4096}"
	for name, a := range map[string]*anypb.Any{
		"xds TypedStruct":  typedStruct(t, doc),
		"udpa TypedStruct": mustAny(t, &udpatype.TypedStruct{Value: document(t, doc)}),
		"Struct":           mustAny(t, document(t, doc)),
	} {
		t.Run(name, func(t *testing.T) {
			d, err := ParseFilterConfig(a)
			if err != nil {
				t.Fatal(err)
			}
			if d.Listener != "/tmp/x.sock" || d.Session.MaxFrameBytes != 4096 {
				t.Errorf("document = %+v", d)
			}
			if c := d.KafkaClusters["kafka"]; c == nil || c.Brokers[0] != "k:9092" || c.Topics[0] != "orders" {
				t.Errorf("cluster = %+v", c)
			}
		})
	}
}

func TestParseFilterConfigEmptyIsDefaults(t *testing.T) {
	for name, a := range map[string]*anypb.Any{
		"no plugin_config":  nil,
		"empty Any":         {},
		"TypedStruct empty": mustAny(t, &xdstype.TypedStruct{}),
	} {
		d, err := ParseFilterConfig(a)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d.Listener == "" || d.Tickets.TTL == 0 || len(d.KafkaClusters) != 0 {
			t.Errorf("%s: defaults not filled: %+v", name, d)
		}
	}
}

func TestParseFilterConfigRejectsBadDocumentsNamingTheKey(t *testing.T) {
	cases := map[string]struct{ doc, key string }{
		"unknown key":      {"kafka_cluster: {}", "kafka_cluster"},
		"unknown nested":   {"kafka_clusters: {kafka: {brokers: ['k:1'], tls: {enable: true}}}", "enable"},
		"bad broker":       {"kafka_clusters: {kafka: {brokers: ['nohost']}}", "kafka_clusters.kafka.brokers[0]"},
		"no brokers":       {"kafka_clusters: {kafka: {topics: [a]}}", "kafka_clusters.kafka.brokers"},
		"bad mechanism":    {"kafka_clusters: {kafka: {brokers: ['k:1'], sasl: {mechanism: MD5, username: u, password: p}}}", "kafka_clusters.kafka.sasl.mechanism"},
		"two passwords":    {"kafka_clusters: {kafka: {brokers: ['k:1'], sasl: {mechanism: PLAIN, username: u, password: p, password_secret: s}}}", "kafka_clusters.kafka.sasl.password"},
		"frame too small":  {"session: {max_frame_bytes: 1}", "session.max_frame_bytes"},
		"bad duration":     {"tickets: {ttl: soon}", "soon"},
		"negative tickets": {"tickets: {max_outstanding: -1}", "tickets.max_outstanding"},
		"bad pattern":      {"kafka_clusters: {kafka: {brokers: ['k:1'], topics: ['[']}}", "kafka_clusters.kafka.topics[0]"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseFilterConfig(typedStruct(t, tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error = %v, want one naming %q", err, tc.key)
			}
			// Through the plugin's parser too: Envoy rejects the config.
			cfg, err := (&Parser{}).Parse(typedStruct(t, tc.doc), newConfigCallbacks())
			if err == nil || cfg != nil || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("Parse = %v, %v; want an error naming %q", cfg, err, tc.key)
			}
		})
	}
}

func TestParseFilterConfigRejectsOtherTypes(t *testing.T) {
	_, err := ParseFilterConfig(mustAny(t, wrapperspb.String("listener: x")))
	if err == nil || !strings.Contains(err.Error(), "TypedStruct") {
		t.Fatalf("error = %v, want one pointing at TypedStruct", err)
	}
}

func TestParseRouteConfig(t *testing.T) {
	r, err := ParseRouteConfig(typedStruct(t, "topics: [orders, 'audit-*']"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Topics) != 2 || r.Topics[1] != "audit-*" {
		t.Errorf("topics = %v", r.Topics)
	}
	for _, bad := range []string{"topic: [a]", "topics: ['[']", "topics: ['']"} {
		if _, err := ParseRouteConfig(typedStruct(t, bad)); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestRouteParseNeverFails(t *testing.T) {
	for _, bad := range []*anypb.Any{
		typedStruct(t, "topic: [a]"),
		mustAny(t, wrapperspb.String("x")),
		{TypeUrl: typedStructURL, Value: []byte{0xff, 0xff}},
	} {
		cfg, err := (&Parser{}).Parse(bad, nil)
		if err != nil {
			t.Fatalf("route Parse returned %v; Envoy would abort the request", err)
		}
		rc, ok := cfg.(*routeConfig)
		if !ok || rc.invalid == nil {
			t.Fatalf("route Parse = %#v, want an invalid route config", cfg)
		}
	}
	if !strings.Contains(testLog.text(), "per-route plugin_config rejected") {
		t.Error("bad route config not logged")
	}
}

// socketPath returns a fresh unix socket path (short enough for sun_path).
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pubsub")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "pubsub.sock")
}
