package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseFillsDefaults(t *testing.T) {
	d, err := Parse([]byte("kafka_clusters:\n  kafka:\n    brokers: [\"k1:9092\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := d.Session
	if s.MaxFrameBytes != DefaultMaxFrameBytes || s.IdleTimeout.Duration() != DefaultIdleTimeout ||
		s.MaxSessions != DefaultMaxSessions || s.MaxInFlight != DefaultMaxInFlight || s.WriteTimeout.Duration() != DefaultWriteTimeout {
		t.Fatalf("session defaults not filled: %+v", s)
	}
	c := d.KafkaClusters["kafka"]
	if c.FetchMaxBytes != DefaultFetchMaxBytes || c.FetchMaxWait.Duration() != DefaultFetchMaxWait || c.RequestTimeout.Duration() != DefaultRequestTimeout ||
		c.WindowBytes != DefaultWindowBytes || c.CacheBytes != DefaultCacheBytes {
		t.Fatalf("cluster defaults not filled: %+v", c)
	}
	if d.Listener != DefaultListenerSocket || d.Tickets.TTL.Duration() != DefaultTicketTTL || d.Tickets.MaxOutstanding != DefaultMaxTickets {
		t.Fatalf("listener/tickets defaults not filled: %+v", d)
	}
	if c.Topics != nil {
		t.Fatalf("absent topics must stay nil (all allowed), got %v", c.Topics)
	}
	if c.ProduceTopics != nil || c.Groups != nil {
		t.Fatalf("absent produce_topics and groups must stay nil (none allowed), got %v %v", c.ProduceTopics, c.Groups)
	}
	if s.PingInterval.Duration() != DefaultPingInterval || s.PongTimeout.Duration() != DefaultPongTimeout ||
		s.MaxPendingBytes != DefaultMaxPendingBytes || s.MaxProduceRecords != DefaultMaxProduceRecords ||
		s.ProduceBytesPerSecond != 0 || d.Limits.MaxMemoryBytes != DefaultMaxMemoryBytes {
		t.Fatalf("keepalive, memory and produce defaults not filled: %+v %+v", s, d.Limits)
	}
}

func TestParseReadsYAMLAndJSONAlike(t *testing.T) {
	y, err := Parse([]byte(`
listener: /tmp/x.sock
kafka_clusters:
  kafka:
    brokers: ["a:1", "b:2"]
    topics: ["orders", "audit-*"]
    fetch_max_wait: 250ms
session: {max_frame_bytes: 4096, idle_timeout: 90s, max_sessions: 5, max_in_flight: 2}
`))
	if err != nil {
		t.Fatal(err)
	}
	j, err := Parse([]byte(`{"listener":"/tmp/x.sock","kafka_clusters":{"kafka":{"brokers":["a:1","b:2"],
		"topics":["orders","audit-*"],"fetch_max_wait":0.25}},
		"session":{"max_frame_bytes":4096,"idle_timeout":"1m30s","max_sessions":5,"max_in_flight":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v %+v", *y.KafkaClusters["kafka"], y.Session) != fmt.Sprintf("%+v %+v", *j.KafkaClusters["kafka"], j.Session) {
		t.Fatalf("YAML and JSON differ:\n%+v\n%+v", *y.KafkaClusters["kafka"], *j.KafkaClusters["kafka"])
	}
	if y.Session.IdleTimeout.Duration() != 90*time.Second || y.KafkaClusters["kafka"].FetchMaxWait.Duration() != 250*time.Millisecond {
		t.Fatalf("durations: %+v", y.Session)
	}
}

func TestParseRejectsBadDocumentsNamingTheKey(t *testing.T) {
	for doc, want := range map[string]string{
		"nope: 1": `unknown key "nope"`,
		"kafka_clusters: {k: {brokers: [a:1], tls_x: 1}}":                                 `unknown key "tls_x"`,
		"session: {max_frame_bytes: 10}":                                                  "session.max_frame_bytes",
		"session: {max_frame_bytes: \"big\"}":                                             "session.max_frame_bytes",
		"session: {idle_timeout: -1s}":                                                    "session.idle_timeout",
		"session: {max_sessions: -3}":                                                     "session.max_sessions",
		"kafka_clusters: {k: {}}":                                                         "kafka_clusters.k.brokers",
		"kafka_clusters: {k: {brokers: [nohost]}}":                                        "kafka_clusters.k.brokers[0]",
		"kafka_clusters: {k: {brokers: [a:1], topics: [\"[\"]}}":                          "kafka_clusters.k.topics[0]",
		"kafka_clusters: {k: {brokers: [a:1], fetch_max_bytes: -1}}":                      "kafka_clusters.k.fetch_max_bytes",
		"kafka_clusters: {k: {brokers: [a:1], cache_bytes: -1}}":                          "kafka_clusters.k.cache_bytes",
		"kafka_clusters: {k: {brokers: [a:1], fetch_max_wait: 10s, request_timeout: 5s}}": "kafka_clusters.k.request_timeout",
		"kafka_clusters: {k: null}":                                                       "kafka_clusters.k",
		"kafka_clusters: [1]":                                                             "kafka_clusters",
		"session: {ping_interval: -1s}":                                                   "session.ping_interval",
		"session: {pong_timeout: -1s}":                                                    "session.pong_timeout",
		"session: {drain_time: -1s}":                                                      "session.drain_time",
		"session: {drain_tme: 20s}":                                                       `unknown key "drain_tme"`,
		"session: {max_pending_bytes: -1}":                                                "session.max_pending_bytes",
		"session: {produce_bytes_per_second: -1}":                                         "session.produce_bytes_per_second",
		"limits: {max_memory_bytes: 1024}":                                                "limits.max_memory_bytes",
		"kafka_clusters: {k: {brokers: [a:1], produce_topics: [\"[\"]}}":                  "kafka_clusters.k.produce_topics[0]",
		"kafka_clusters: {k: {brokers: [a:1], groups: [\"\"]}}":                           "kafka_clusters.k.groups[0]",
	} {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error naming %s", doc, err, want)
		}
	}
}

func TestParseRoute(t *testing.T) {
	r, err := ParseRoute([]byte(`topics: ["a", "b-*"]`))
	if err != nil || len(r.Topics) != 2 {
		t.Fatalf("got %+v, %v", r, err)
	}
	if _, err := ParseRoute([]byte(`groups: ["["]`)); err == nil || !strings.Contains(err.Error(), "groups[0]") {
		t.Fatalf("route accepted a bad group pattern: %v", err)
	}
	if _, err := ParseRoute([]byte(`brokers: [x:1]`)); err == nil {
		t.Fatal("route accepted an unknown key")
	}
}
