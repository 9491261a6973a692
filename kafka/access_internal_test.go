package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
)

// accessPolicy returns the policy of a session of claims on a cluster whose
// allow-lists are open and whose access section is accessYAML, narrowed by
// routes (route documents in YAML).
func accessPolicy(t *testing.T, accessYAML string, claims identity.Claims, routes ...string) Policy {
	t.Helper()
	doc, err := config.Parse([]byte("identity: {envoy_jwt_metadata: p}\nkafka_clusters:\n  k:\n    brokers: [a:1]\n    produce_topics: [\"*\"]\n    groups: [\"*\"]\n    access:\n" + accessYAML))
	if err != nil {
		t.Fatal(err)
	}
	var rs []*config.Route
	for _, r := range routes {
		route, err := config.ParseRoute([]byte(r))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, route)
	}
	return NewPolicy(doc.KafkaClusters["k"], rs...).WithClaims(claims)
}

func TestClaimsMatchLiterally(t *testing.T) {
	const rules = "      - read: [\"t.{c}\", \"x.{c}.*\"]\n"
	for _, c := range []struct {
		claim   any
		allowed []string
		denied  []string
	}{
		{"a", []string{"t.a", "x.a.1"}, []string{"t.b", "t.a1", "x.b.1"}},
		{"*", []string{"t.*", "x.*.1"}, []string{"t.a", "x.a.1"}},
		{"?", []string{"t.?"}, []string{"t.a"}},
		{"[ab]", []string{"t.[ab]"}, []string{"t.a", "t.b"}},
		{`a\`, []string{`t.a\`}, []string{"t.a"}},
		{"]", []string{"t.]"}, nil},
		{json.Number("42"), []string{"t.42"}, []string{"t.4"}},
		{float64(7), []string{"t.7"}, nil},
		{[]any{"r1", "r2", true}, []string{"t.r1", "t.r2", "x.r2.z"}, []string{"t.r3", "t.true"}},
		{true, nil, []string{"t.true", "t.*"}},
		{map[string]any{"a": "b"}, nil, []string{"t.map[a:b]", "t."}},
		{[]any{}, nil, []string{"t."}},
		{nil, nil, []string{"t.", "t.<nil>"}},
	} {
		p := accessPolicy(t, rules, identity.Claims{"c": c.claim, "other": "a"})
		for _, topic := range c.allowed {
			if err := p.checkRead(topic); err != nil {
				t.Errorf("claim %#v: %s refused: %v", c.claim, topic, err)
			}
		}
		for _, topic := range c.denied {
			if err := p.checkRead(topic); !errors.Is(err, ErrTopicNotAllowed) {
				t.Errorf("claim %#v: %s allowed", c.claim, topic)
			}
		}
	}
	missing := accessPolicy(t, rules, identity.Claims{"other": "a"})
	if err := missing.checkRead("t."); !errors.Is(err, ErrTopicNotAllowed) {
		t.Error("a rule naming a missing claim matched")
	}
}

func TestAccessRulesOnTopOfAllowLists(t *testing.T) {
	doc, err := config.Parse([]byte("identity: {envoy_jwt_metadata: p}\nkafka_clusters:\n  k:\n    brokers: [a:1]\n    topics: [\"user.alice\"]\n    access: [{read: [\"user.*\"]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := NewPolicy(doc.KafkaClusters["k"]).WithClaims(identity.Claims{"sub": "bob"})
	if err := p.checkRead("user.bob"); !errors.Is(err, ErrTopicNotAllowed) {
		t.Error("an access rule widened the topics allow-list")
	}
	if err := p.checkRead("user.alice"); err != nil {
		t.Error(err)
	}
	if err := p.checkGroup("g"); !errors.Is(err, ErrGroupNotAllowed) {
		t.Error("a session without a groups rule used a group")
	}
	if _, err := p.produceStamps("user.alice"); !errors.Is(err, ErrTopicNotAllowed) {
		t.Error("a session without a produce rule may write")
	}
}

func TestReadScope(t *testing.T) {
	const rules = `      - read: ["orders"]
        records: {headers: {tenant: "{tenant}"}}
      - read: ["orders", "audit"]
        records: {key: "{sub}", headers: {kind: "k"}}
      - read: ["public"]
      - read: ["public"]
        records: {key: "x"}
      - read: ["rooms"]
        records: {headers: {room: "{rooms}"}}
`
	p := accessPolicy(t, rules, identity.Claims{"sub": "alice", "tenant": "acme", "rooms": []any{"r1", "r2"}})
	scope := func(topic string) string { return fmt.Sprint(describe(p.ReadScope(topic))) }
	for topic, want := range map[string]string{
		"orders": `[h"tenant"="acme" k"alice" h"kind"="k"]`,
		"audit":  `[k"alice" h"kind"="k"]`,
		"public": `all`,
		"rooms":  `[h"room"="r1" h"room"="r2"]`,
		"other":  `[]`,
	} {
		if got := scope(topic); got != want {
			t.Errorf("%s: scope %s, want %s", topic, got, want)
		}
	}
	// Without the tenant claim, the tenant rule matches nothing: the
	// session sees only what the other rule lets it see.
	p = accessPolicy(t, rules, identity.Claims{"sub": "alice"})
	if got := fmt.Sprint(describe(p.ReadScope("orders"))); got != `[k"alice" h"kind"="k"]` {
		t.Errorf("orders without tenant: %s", got)
	}
	rec := &kgo.Record{Key: []byte("alice"), Headers: []kgo.RecordHeader{{Key: "kind", Value: []byte("k")}}}
	if !p.ReadScope("orders").Visible(rec) || p.ReadScope("orders").Visible(&kgo.Record{Key: []byte("bob")}) {
		t.Error("scope visibility")
	}
}

// TestReadScopeAcrossLevels: a route's rules narrow the cluster's; records
// are visible when every level lets the session see them.
func TestReadScopeAcrossLevels(t *testing.T) {
	cluster := `      - read: ["orders"]
        records: {headers: {tenant: "{tenant}"}}
`
	p := accessPolicy(t, cluster, identity.Claims{"tenant": "acme", "sub": "alice"},
		`access: [{read: ["orders"], records: {key: "{sub}"}}]`,
		`access: [{read: ["orders"]}]`)
	if got := fmt.Sprint(describe(p.ReadScope("orders"))); got != `[k"alice" h"tenant"="acme"]` {
		t.Errorf("scope %s", got)
	}
	p = accessPolicy(t, "      - read: [\"orders\"]\n        records: {key: a}\n", nil, `access: [{read: ["orders"], records: {key: b}}]`)
	if s := p.ReadScope("orders"); s == nil || len(s) != 0 {
		t.Errorf("two different keys: scope %v, want none", describe(s))
	}
	p = accessPolicy(t, "      - read: [\"orders\"]\n", nil, `access: [{read: ["audit"]}]`)
	if err := p.checkRead("orders"); !errors.Is(err, ErrTopicNotAllowed) {
		t.Error("a route's access section did not narrow the cluster's")
	}
}

func TestProduceStamps(t *testing.T) {
	const rules = `      - produce: ["chat"]
        records: {headers: {sender: "{sub}"}, key: "{sub}"}
      - produce: ["rooms.{rooms}"]
        records: {headers: {room: "{rooms}"}}
      - produce: ["free"]
`
	p := accessPolicy(t, rules, identity.Claims{"sub": "alice", "rooms": []any{"r1", "r2"}})
	stamps, err := p.produceStamps("chat")
	if err != nil || len(stamps) != 1 {
		t.Fatalf("chat: %v %v", stamps, err)
	}
	r := &kgo.Record{Key: []byte("mallory"), Headers: []kgo.RecordHeader{
		{Key: "sender", Value: []byte("mallory")}, {Key: "x", Value: []byte("1")}, {Key: "sender", Value: []byte("eve")},
	}}
	stamps[0].stamp(r)
	if got := fmt.Sprintf("%s %s", r.Key, headerText(r.Headers)); got != "alice x=1 sender=alice" {
		t.Errorf("stamped record: %s", got)
	}
	if stamps, err := p.produceStamps("free"); err != nil || len(stamps) != 0 {
		t.Errorf("free: %v %v", stamps, err)
	}
	// A list claim gives no single value to write.
	if _, err := p.produceStamps("rooms.r1"); !errors.Is(err, ErrTopicNotAllowed) {
		t.Errorf("rooms.r1 with two rooms: %v", err)
	}
	one := accessPolicy(t, rules, identity.Claims{"sub": "alice", "rooms": []any{"r1"}})
	if stamps, err := one.produceStamps("rooms.r1"); err != nil || describe(Scope(stamps)) != `[h"room"="r1"]` {
		t.Errorf("rooms.r1 with one room: %v %v", describe(Scope(stamps)), err)
	}
}

// describe returns a readable text of a scope: "all" for nil.
func describe(s Scope) string {
	if s == nil {
		return "all"
	}
	out := "["
	for i, m := range s {
		if i > 0 {
			out += " "
		}
		sep := ""
		if m.HasKey {
			out += fmt.Sprintf("k%q", m.Key)
			sep = " "
		}
		for _, h := range m.Headers {
			out += fmt.Sprintf("%sh%q=%q", sep, h.Key, h.Value)
			sep = " "
		}
	}
	return out + "]"
}

func headerText(hs []kgo.RecordHeader) string {
	out := ""
	for i, h := range hs {
		if i > 0 {
			out += " "
		}
		out += h.Key + "=" + string(h.Value)
	}
	return out
}
