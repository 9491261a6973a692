package kafka_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/server"
)

// claimsResolver serves every session as the identity claims, on cluster
// narrowed by routes.
type claimsResolver struct {
	pool    *kafka.Pool
	cluster *config.KafkaCluster
	routes  []*config.Route
	claims  identity.Claims
}

func (r *claimsResolver) Resolve(*http.Request) (server.Route, error) {
	return server.KafkaRoute(r.pool, "kafka", r.cluster, kafka.NewPolicy(r.cluster, r.routes...).WithClaims(r.claims), slog.Default())
}

// startClaimsServer serves sessions of claims on a loopback port.
func startClaimsServer(t *testing.T, cluster *config.KafkaCluster, claims identity.Claims, routes ...*config.Route) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool := kafka.NewPool(kafka.Logger(log))
	srv := server.New(&claimsResolver{pool: pool, cluster: cluster, routes: routes, claims: claims}, server.Options{Logger: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Shutdown(ctx(t))
		pool.Close()
	})
	return "ws://" + ln.Addr().String() + "/"
}

// accessCluster returns cluster "kafka" of a document with identity and
// the access section accessYAML (indented for the cluster), every
// allow-list open.
func accessCluster(t *testing.T, brokers []string, accessYAML string) *config.KafkaCluster {
	t.Helper()
	doc, err := config.Parse([]byte(testkit.ClusterYAML(brokers,
		"    produce_topics: [\"*\"]\n    groups: [\"*\"]\n"+accessYAML,
		"identity: {envoy_jwt_metadata: jwt_payload}\n")))
	if err != nil {
		t.Fatal(err)
	}
	return doc.KafkaClusters["kafka"]
}

// TestAccessRulesApplyToEveryCommand: with read, produce and groups rules
// naming {sub}, every command that names a topic (group) is allowed on the
// session's own and refused on another subject's, on top of open
// allow-lists; a claim of "*" widens nothing.
func TestAccessRulesApplyToEveryCommand(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "user.alice", "user.bob", "user.*"))
	cluster := accessCluster(t, k.ListenAddrs(), `    access:
      - read: ["user.{sub}"]
        produce: ["user.{sub}"]
      - groups: ["g-{sub}"]
`)
	for _, c := range []struct {
		sub, own, other string
	}{
		{"alice", "user.alice", "user.bob"},
		// A claim of "*" is the literal topic "user.*", never a glob.
		{"*", "user.*", "user.alice"},
	} {
		cl := dialURL(t, startClaimsServer(t, cluster, identity.Claims{"sub": c.sub}))
		for name, reqs := range policyCommands {
			for _, r := range reqs {
				if _, err := cl.Do(ctx(t), r.build(c.own, "g-"+c.sub)); err != nil {
					t.Errorf("sub %q: %s on its own topic: %v", c.sub, name, err)
				}
				msg := serverError(t, func() error { _, err := cl.Do(ctx(t), r.build(c.other, "g-"+c.sub)); return err }())
				if !strings.HasSuffix(msg, "err: topic not allowed") {
					t.Errorf("sub %q: %s on %s: %q, want topic not allowed", c.sub, name, c.other, msg)
				}
				if !r.namesGroup {
					continue
				}
				msg = serverError(t, func() error { _, err := cl.Do(ctx(t), r.build(c.own, "g-other")); return err }())
				if !strings.HasSuffix(msg, "err: group not allowed") {
					t.Errorf("sub %q: %s with another group: %q, want group not allowed", c.sub, name, msg)
				}
			}
		}
	}
}

// TestAnonymousSessionMatchesNoClaimRule: a session without claims gets
// nothing from rules naming claims, and what the rules without any grant.
func TestAnonymousSessionMatchesNoClaimRule(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "user.alice", "public"))
	cluster := accessCluster(t, k.ListenAddrs(), `    access:
      - read: ["user.{sub}"]
      - read: ["public"]
`)
	cl := dialURL(t, startClaimsServer(t, cluster, nil))
	if _, err := cl.ListOffset(ctx(t), "public", 0, -1); err != nil {
		t.Fatalf("public topic: %v", err)
	}
	for _, topic := range []string{"user.alice", "user.", "user.{sub}"} {
		_, err := cl.ListOffset(ctx(t), topic, 0, -1)
		if msg := serverError(t, err); !strings.HasSuffix(msg, "err: topic not allowed") {
			t.Errorf("%s: %q, want topic not allowed", topic, msg)
		}
	}
}
