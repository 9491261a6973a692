package filter

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"github.com/gobwas/ws"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
	"github.com/envoy-pubsub/gateway/sessionhost"
)

// plugin is a filter-level config parsed as Envoy would, with its stats.
type plugin struct {
	cfg    *filterConfig
	stats  *configCallbacks
	socket string
}

// parsePlugin parses doc (YAML, without listener) for a fresh socket and
// destroys the config when the test ends.
func parsePlugin(t *testing.T, doc string) *plugin {
	t.Helper()
	sock := socketPath(t)
	return parsePluginAt(t, sock, doc)
}

func parsePluginAt(t *testing.T, sock, doc string) *plugin {
	t.Helper()
	stats := newConfigCallbacks()
	cfg, err := (&Parser{}).Parse(typedStruct(t, "listener: "+strconv.Quote(sock)+"\n"+doc), stats)
	if err != nil {
		t.Fatal(err)
	}
	fc := cfg.(*filterConfig)
	t.Cleanup(fc.Destroy)
	return &plugin{cfg: fc, stats: stats, socket: sock}
}

// route parses a per-route document and merges it under the plugin.
func (p *plugin) route(t *testing.T, docs ...string) interface{} {
	t.Helper()
	var merged interface{} = p.cfg
	for _, doc := range docs {
		rc, err := (&Parser{}).Parse(typedStruct(t, doc), nil)
		if err != nil {
			t.Fatal(err)
		}
		merged = (&Parser{}).Merge(merged, rc)
	}
	return merged
}

// decode runs DecodeHeaders for a request routed to cluster.
func decode(cfg interface{}, cb *callbacks, h *requestHeaders) api.StatusType {
	return Factory(cfg, cb).DecodeHeaders(h, true)
}

func upgradeHeaders(extra ...string) *requestHeaders {
	return newHeaders(append([]string{":method", "GET", ":path", "/kafka", "connection", "Upgrade", "upgrade", "websocket"}, extra...)...)
}

const oneCluster = "kafka_clusters:\n  kafka:\n    brokers: ['127.0.0.1:1']\n    topics: [orders, 'audit-*']\n"

var ticketFormat = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestClientTicketIsRemovedOnlyWhenSent(t *testing.T) {
	p := parsePlugin(t, oneCluster)
	h := upgradeHeaders()
	decode(p.cfg, routedTo("kafka"), h)
	if len(h.mutations) != 1 || h.mutations[0] != "set "+sessionhost.TicketHeader {
		t.Errorf("mutations = %v, want only the ticket set", h.mutations)
	}
	h = upgradeHeaders("X-PubSub-Ticket", "forged")
	decode(p.cfg, routedTo("kafka"), h)
	if len(h.mutations) != 2 || h.mutations[0] != "del "+sessionhost.TicketHeader {
		t.Errorf("mutations = %v, want the client ticket removed first", h.mutations)
	}
}

func TestUpgradeToKafkaClusterGetsATicket(t *testing.T) {
	p := parsePlugin(t, oneCluster)
	cb := routedTo("kafka")
	h := upgradeHeaders(sessionhost.TicketHeader, "forged-by-client", sessionhost.TicketHeader, "another")
	if st := decode(p.cfg, cb, h); st != api.Continue {
		t.Fatalf("status = %v, want Continue", st)
	}
	if len(cb.replies) != 0 {
		t.Fatalf("local reply %+v", cb.replies)
	}
	got := h.Values(sessionhost.TicketHeader)
	if len(got) != 1 || !ticketFormat.MatchString(got[0]) {
		t.Fatalf("%s = %q, want one fresh 128-bit ticket", sessionhost.TicketHeader, got)
	}
	g, err := p.cfg.host.Redeem(got[0])
	if err != nil {
		t.Fatal(err)
	}
	if g.Cluster != "kafka" || g.Kafka.Brokers[0] != "127.0.0.1:1" || len(g.Kafka.Topics) != 2 {
		t.Errorf("grant = %+v", g)
	}
	if n := p.stats.value(statTicketsIssued); n != 1 {
		t.Errorf("%s = %d, want 1", statTicketsIssued, n)
	}
}

func TestTicketsAreUnique(t *testing.T) {
	p := parsePlugin(t, oneCluster)
	seen := map[string]bool{}
	for range 100 {
		h := upgradeHeaders()
		decode(p.cfg, routedTo("kafka"), h)
		v, _ := h.Get(sessionhost.TicketHeader)
		if seen[v] {
			t.Fatalf("ticket %s issued twice", v)
		}
		seen[v] = true
	}
}

func TestKafkaClusterWithoutUpgradeGets426(t *testing.T) {
	p := parsePlugin(t, oneCluster)
	cb := routedTo("kafka")
	h := newHeaders(":method", "GET", ":path", "/kafka", sessionhost.TicketHeader, "client-value")
	if st := decode(p.cfg, cb, h); st != api.LocalReply {
		t.Fatalf("status = %v, want LocalReply", st)
	}
	if len(cb.replies) != 1 || cb.replies[0].status != http.StatusUpgradeRequired {
		t.Fatalf("replies = %+v, want one 426", cb.replies)
	}
	// No Upgrade header: Envoy removes Upgrade and Connection from the
	// response to a request that is not an upgrade
	// (ConnectionManagerUtility::mutateResponseHeaders), so the body says it.
	if r := cb.replies[0]; !strings.Contains(r.body, "Upgrade: websocket") || len(r.headers) != 0 {
		t.Errorf("426 reply = %+v, want a body asking for a WebSocket upgrade and no headers", r)
	}
	if len(h.mutations) != 0 {
		t.Errorf("headers mutated: %v", h.mutations)
	}
	if n := p.stats.value(statUpgradeRequired); n != 1 {
		t.Errorf("%s = %d", statUpgradeRequired, n)
	}
}

func TestOtherClustersPassUntouched(t *testing.T) {
	p := parsePlugin(t, oneCluster)
	for _, cb := range []*callbacks{routedTo("web"), routedTo("Kafka"), routedTo("")} {
		for _, h := range []*requestHeaders{upgradeHeaders(sessionhost.TicketHeader, "client-value"), newHeaders(":path", "/")} {
			if st := decode(p.cfg, cb, h); st != api.Continue {
				t.Errorf("cluster %q: status = %v, want Continue", cb.cluster, st)
			}
			if len(h.mutations) != 0 || len(cb.replies) != 0 || len(cb.secretReads) != 0 {
				t.Errorf("cluster %q: touched: mutations %v replies %v secrets %v", cb.cluster, h.mutations, cb.replies, cb.secretReads)
			}
		}
	}
	if n := p.stats.value(statTicketsIssued); n != 0 {
		t.Errorf("%s = %d, want 0", statTicketsIssued, n)
	}
}

func TestUpgradeDetection(t *testing.T) {
	for _, v := range []string{"websocket", "WebSocket", "h2c, websocket"} {
		if upgrade, _ := inspect(newHeaders("upgrade", v)); !upgrade {
			t.Errorf("Upgrade: %s not detected", v)
		}
	}
	for _, h := range []*requestHeaders{newHeaders(), newHeaders("upgrade", "h2c"), newHeaders("connection", "upgrade")} {
		if upgrade, _ := inspect(h); upgrade {
			t.Errorf("%v detected as an upgrade", h.h)
		}
	}
}

const saslCluster = `kafka_clusters:
  kafka:
    brokers: ['127.0.0.1:1']
    sasl: {mechanism: SCRAM-SHA-512, username: app, password_secret: kafka-app}
  inline:
    brokers: ['127.0.0.1:1']
    sasl: {mechanism: PLAIN, username: app, password: inline-s3cret-value}
`

func TestSecretIsReadPerRequestAndCarriedInTheTicket(t *testing.T) {
	p := parsePlugin(t, saslCluster)
	cb := routedTo("kafka")
	cb.secrets["kafka-app"] = "envoy-s3cret-value"
	h := upgradeHeaders()
	if st := decode(p.cfg, cb, h); st != api.Continue {
		t.Fatalf("status = %v, replies %+v", st, cb.replies)
	}
	if len(cb.secretReads) != 1 || cb.secretReads[0] != "kafka-app" {
		t.Errorf("secret reads = %v", cb.secretReads)
	}
	v, _ := h.Get(sessionhost.TicketHeader)
	g, err := p.cfg.host.Redeem(v)
	if err != nil {
		t.Fatal(err)
	}
	if g.Kafka.SASL.Password.Reveal() != "envoy-s3cret-value" || g.Kafka.SASL.Username != "app" {
		t.Errorf("ticket SASL = %+v", g.Kafka.SASL)
	}
	// The filter-level config keeps no resolved secret.
	if p.cfg.doc.KafkaClusters["kafka"].SASL.Password != "" {
		t.Error("secret written into the shared config")
	}

	// Rotation: the next request reads the current value.
	cb = routedTo("kafka")
	cb.secrets["kafka-app"] = "rotated-s3cret-value"
	h = upgradeHeaders()
	decode(p.cfg, cb, h)
	v, _ = h.Get(sessionhost.TicketHeader)
	if g, _ := p.cfg.host.Redeem(v); g == nil || g.Kafka.SASL.Password.Reveal() != "rotated-s3cret-value" {
		t.Error("rotated secret not used")
	}

	cb = routedTo("inline")
	h = upgradeHeaders()
	decode(p.cfg, cb, h)
	v, _ = h.Get(sessionhost.TicketHeader)
	if g, _ := p.cfg.host.Redeem(v); g == nil || g.Kafka.SASL.Password.Reveal() != "inline-s3cret-value" {
		t.Error("inline password not carried")
	}
	assertNoSecretsLogged(t, "envoy-s3cret-value", "rotated-s3cret-value", "inline-s3cret-value")
}

func TestMissingSecretGets503WithoutTicket(t *testing.T) {
	p := parsePlugin(t, saslCluster)
	cb := routedTo("kafka") // the store has no kafka-app
	h := upgradeHeaders(sessionhost.TicketHeader, "client-value")
	if st := decode(p.cfg, cb, h); st != api.LocalReply {
		t.Fatalf("status = %v, want LocalReply", st)
	}
	if len(cb.replies) != 1 || cb.replies[0].status != http.StatusServiceUnavailable {
		t.Fatalf("replies = %+v, want one 503", cb.replies)
	}
	if strings.Contains(cb.replies[0].body, "kafka-app") {
		t.Errorf("503 body names the secret: %q", cb.replies[0].body)
	}
	if _, ok := h.Get(sessionhost.TicketHeader); ok {
		t.Error("client ticket left in place")
	}
	if p.cfg.host.Pending() != 0 {
		t.Error("ticket issued without credentials")
	}
	if !strings.Contains(testLog.text(), `secret "kafka-app" not found`) {
		t.Error("missing secret not logged by name")
	}
}

func assertNoSecretsLogged(t *testing.T, secrets ...string) {
	t.Helper()
	logs := testLog.text()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("secret %q appears in the logs", s)
		}
	}
}

// TestRouteNarrowsClusterTopics runs a session whose ticket went through a
// virtual host's and a route's lists: every command naming a topic or group
// is refused for a name one of the levels denies, before any Kafka contact
// (the cluster's broker does not exist, so a command that got past the
// policy would fail differently).
func TestRouteNarrowsClusterTopics(t *testing.T) {
	p := parsePlugin(t, "kafka_clusters:\n  kafka:\n    brokers: ['127.0.0.1:1']\n"+
		"    topics: [orders, 'audit-*']\n    produce_topics: [orders, 'audit-*']\n    groups: ['web-*']\n")
	// Virtual host, then route: each level narrows further.
	merged := p.route(t,
		"{topics: ['audit-*', orders, billing], produce_topics: ['audit-*', billing], groups: ['web-*', app]}",
		"{topics: ['audit-eu', 'billing'], produce_topics: ['audit-eu', orders], groups: [web-1, app]}")
	c, err := p.dial(p.ticket(t, merged))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type command struct {
		build     func(topic, group string) *pb.PubSubReq
		partition string // as the error names it
	}
	commands := map[string]command{
		pubsub.CmdKafkaFetch: {func(topic, _ string) *pb.PubSubReq {
			return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaFetch{CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: topic, Partition: 3}}}
		}, "3"},
		pubsub.CmdKafkaListOffset: {func(topic, _ string) *pb.PubSubReq {
			return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaListOffset{CmdKafkaListOffset: &pb.CmdKafkaListOffset{Topic: topic, Partition: 3}}}
		}, "3"},
		pubsub.CmdKafkaSubscribe: {func(topic, _ string) *pb.PubSubReq {
			return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaSubscribe{CmdKafkaSubscribe: &pb.CmdKafkaSubscribe{Topic: topic, Partitions: []int32{3}}}}
		}, "3"},
		"group subscribe": {func(topic, group string) *pb.PubSubReq {
			return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaSubscribe{CmdKafkaSubscribe: &pb.CmdKafkaSubscribe{Topic: topic, Group: group}}}
		}, "-1"},
		pubsub.CmdKafkaCommit: {func(topic, group string) *pb.PubSubReq {
			return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaCommit{CmdKafkaCommit: &pb.CmdKafkaCommit{Group: group, Topic: topic, Offsets: []*pb.KafkaPartitionOffset{{Partition: 3}}}}}
		}, "3"},
		pubsub.CmdKafkaCommitted: {func(topic, group string) *pb.PubSubReq {
			return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaCommitted{CmdKafkaCommitted: &pb.CmdKafkaCommitted{Group: group, Topic: topic, Partitions: []int32{3}}}}
		}, "3"},
	}
	refused := func(name string, req *pb.PubSubReq, topic, partition, cause string) {
		t.Helper()
		_, err := c.Do(ctx, req)
		if err == nil || !strings.HasSuffix(err.Error(), "topic: "+topic+", partition: "+partition+", err: "+cause) {
			t.Errorf("%s %s: %v, want %s", name, topic, err, cause)
		}
	}
	for name, cmd := range commands {
		// billing: the virtual host denies it; orders and audit-us: the
		// route does; payments: the cluster does.
		for _, topic := range []string{"billing", "orders", "audit-us", "payments"} {
			refused(name, cmd.build(topic, "web-1"), topic, cmd.partition, "topic not allowed")
		}
		if name == pubsub.CmdKafkaFetch || name == pubsub.CmdKafkaListOffset || name == pubsub.CmdKafkaSubscribe {
			continue
		}
		// app: the cluster denies it; web-2: the route does.
		for _, group := range []string{"app", "web-2"} {
			refused(name, cmd.build("audit-eu", group), "audit-eu", cmd.partition, "group not allowed")
		}
	}
	// Producing: billing is readable but the route does not let it be
	// written, orders the virtual host does not, audit-us the route.
	for _, topic := range []string{"billing", "orders", "audit-us", "payments"} {
		refused(pubsub.CmdKafkaProduce, &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaProduce{CmdKafkaProduce: &pb.CmdKafkaProduce{
			Topic: topic, Partition: 3, Records: []*pb.KafkaRecord{{Value: []byte("v")}},
		}}}, topic, "3", "topic not allowed")
	}
	// Allowed by every level: the command reaches for the broker.
	if _, err := c.Do(ctx, commands[pubsub.CmdKafkaListOffset].build("audit-eu", "")); err == nil || strings.Contains(err.Error(), "not allowed") {
		t.Errorf("list offset of an allowed topic: %v, want a broker error", err)
	}
}

func TestBadRouteConfigRefusesKafkaUpgradesOnly(t *testing.T) {
	p := parsePlugin(t, oneCluster)
	merged := p.route(t, "topics: [a]", "topicz: [a]")
	cb := routedTo("kafka")
	if st := decode(merged, cb, upgradeHeaders()); st != api.LocalReply || cb.replies[0].status != http.StatusInternalServerError {
		t.Fatalf("status %v replies %+v, want a 500 local reply", st, cb.replies)
	}
	cb = routedTo("web")
	if st := decode(merged, cb, upgradeHeaders()); st != api.Continue || len(cb.replies) != 0 {
		t.Errorf("other cluster: status %v replies %+v", st, cb.replies)
	}
}

func TestMergeAndFactoryNeverFail(t *testing.T) {
	merged := (&Parser{}).Merge("strange parent", 42)
	if f := Factory(merged, routedTo("kafka")); f == nil {
		t.Fatal("no filter")
	} else if st := f.DecodeHeaders(upgradeHeaders(), true); st != api.Continue {
		t.Errorf("status = %v, want pass-through", st)
	}
	if f := Factory(&routeConfig{}, routedTo("kafka")); f.DecodeHeaders(upgradeHeaders(), true) != api.Continue {
		t.Error("route config alone does not pass through")
	}
}

func TestTicketBoundRefusesWith503(t *testing.T) {
	p := parsePlugin(t, oneCluster+"tickets: {max_outstanding: 2}\n")
	for i := range 3 {
		cb := routedTo("kafka")
		st := decode(p.cfg, cb, upgradeHeaders())
		if i < 2 && st != api.Continue {
			t.Fatalf("ticket %d refused: %+v", i, cb.replies)
		}
		if i == 2 && (st != api.LocalReply || cb.replies[0].status != http.StatusServiceUnavailable) {
			t.Fatalf("third ticket: status %v replies %+v, want 503", st, cb.replies)
		}
	}
}

// A stream that ends before its upgrade reaches the session server (the
// router's 503, a failed connect, a client reset) gives its ticket back in
// OnDestroy: such streams never fill the bounded store. A redeemed ticket's
// stream ends without a revoke.
func TestStreamEndingUnredeemedRevokesItsTicket(t *testing.T) {
	p := parsePlugin(t, oneCluster+"tickets: {max_outstanding: 2}\n")
	for i := range 5 {
		cb := routedTo("kafka")
		f := Factory(p.cfg, cb)
		if st := f.DecodeHeaders(upgradeHeaders(), true); st != api.Continue {
			t.Fatalf("upgrade %d after %d unredeemed streams ended: status %v replies %+v", i, i, st, cb.replies)
		}
		if got := p.stats.value(statTicketsOutstand); got != 1 {
			t.Errorf("tickets_outstanding gauge = %d with one stream open, want 1", got)
		}
		f.OnDestroy(api.Normal)
		if got := p.stats.value(statTicketsOutstand); got != 0 {
			t.Errorf("tickets_outstanding gauge = %d after the stream ended, want 0", got)
		}
	}
	if p.cfg.host.Pending() != 0 || p.stats.value(statTicketsRevoked) != 5 {
		t.Errorf("%d tickets pending, %d revoked; want 0 and 5", p.cfg.host.Pending(), p.stats.value(statTicketsRevoked))
	}

	// A session's stream ends after its ticket was redeemed: nothing to revoke.
	h := upgradeHeaders()
	f := Factory(p.cfg, routedTo("kafka"))
	f.DecodeHeaders(h, true)
	v, _ := h.Get(sessionhost.TicketHeader)
	c, err := p.dial(v)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.OnDestroy(api.Normal)
	if p.stats.value(statTicketsRevoked) != 5 {
		t.Errorf("the redeemed ticket's stream counted a revoke")
	}
	testkit.Ping(t, c)

	// Streams the filter answered itself, or passed through, hold no ticket.
	for _, cluster := range []string{"kafka", "web"} {
		f := Factory(p.cfg, routedTo(cluster))
		f.DecodeHeaders(newHeaders(":method", "GET", ":path", "/"), true)
		f.OnDestroy(api.Terminate)
	}
	if p.stats.value(statTicketsRevoked) != 5 {
		t.Errorf("a stream without a ticket counted a revoke")
	}
}

// dial opens a session on the plugin's socket with ticket.
func (p *plugin) dial(ticket string) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return client.Dial(ctx, "ws://pubsub/kafka", client.Options{
		Header: http.Header{"X-Pubsub-Ticket": {ticket}},
		NetDial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p.socket)
		},
	})
}

func (p *plugin) ticket(t *testing.T, cfg interface{}) string {
	t.Helper()
	h := upgradeHeaders()
	if st := decode(cfg, routedTo("kafka"), h); st != api.Continue {
		t.Fatalf("status %v", st)
	}
	v, _ := h.Get(sessionhost.TicketHeader)
	return v
}

func wantStatus(t *testing.T, err error, status int) {
	t.Helper()
	var se ws.StatusError
	if !errors.As(err, &se) || int(se) != status {
		t.Fatalf("dial error = %v, want HTTP %d", err, status)
	}
}

func TestSessionServerRedeemsTicketsOnce(t *testing.T) {
	p := parsePlugin(t, oneCluster)
	ticket := p.ticket(t, p.route(t, "topics: ['audit-*']"))
	c, err := p.dial(ticket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if state, err := c.Ping(ctx, []byte("hi")); err != nil || string(state) != "hi" {
		t.Fatalf("ping = %q, %v", state, err)
	}
	// Denied by the route's narrowing before any Kafka contact.
	if _, err := c.ListOffset(ctx, "orders", 0, -1); err == nil || !strings.Contains(err.Error(), "topic not allowed") {
		t.Errorf("list offset of a narrowed-out topic: %v", err)
	}

	_, err = p.dial(ticket)
	wantStatus(t, err, http.StatusUnauthorized)
	_, err = p.dial("0123456789abcdef0123456789abcdef")
	wantStatus(t, err, http.StatusUnauthorized)
	_, err = p.dial("")
	wantStatus(t, err, http.StatusUnauthorized)

	if n := p.stats.value(statTicketsRejected); n != 3 {
		t.Errorf("%s = %d, want 3", statTicketsRejected, n)
	}
	if n := p.stats.value(statUpgradesRefused); n != 3 {
		t.Errorf("%s = %d, want 3", statUpgradesRefused, n)
	}
	if n := p.stats.value(statSessionsTotal); n != 1 {
		t.Errorf("%s = %d, want 1", statSessionsTotal, n)
	}
	if n := p.stats.value(statSessionsActive); n != 1 {
		t.Errorf("%s = %d, want 1", statSessionsActive, n)
	}
	if n := p.stats.value(statCommandPrefix + pubsub.CmdPing); n != 1 {
		t.Errorf("ping counter = %d", n)
	}
	if n := p.stats.value(statCommandErrPrefix + pubsub.CmdKafkaListOffset); n != 1 {
		t.Errorf("list offset error counter = %d", n)
	}
	logs := testLog.text()
	for _, reason := range []string{sessionhost.ErrTicketReused.Error(), sessionhost.ErrTicketUnknown.Error(), sessionhost.ErrTicketMissing.Error()} {
		if !strings.Contains(logs, "upgrade refused") || !strings.Contains(logs, reason) {
			t.Errorf("refusal %q not logged", reason)
		}
	}
	if strings.Contains(logs, ticket) {
		t.Error("ticket value logged")
	}
}

func TestConfigUpdateKeepsSessionsAndLastDestroyDrains(t *testing.T) {
	sock := socketPath(t)
	first := parsePluginAt(t, sock, oneCluster)
	c, err := first.dial(first.ticket(t, first.cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// An update with other limits: same server, new stats, old session kept.
	second := parsePluginAt(t, sock, oneCluster+"session: {max_sessions: 5}\n")
	if second.cfg.host != first.cfg.host {
		t.Fatal("update started a second session server")
	}
	first.cfg.Destroy()
	first.stats.destroy() // Envoy refuses the old config's metrics from now on
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, nil); err != nil {
		t.Fatalf("session lost on config update: %v", err)
	}
	c2, err := second.dial(second.ticket(t, second.cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	testkit.Ping(t, c2)
	if n := second.stats.value(statSessionsActive); n != 2 {
		t.Errorf("active sessions = %d, want 2", n)
	}

	second.cfg.Destroy()
	for _, cl := range []*client.Client{c, c2} {
		testkit.WaitClosedWith(t, cl, ws.StatusGoingAway)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestListenerThatIsNotASocketIsRejected(t *testing.T) {
	file := socketPath(t)
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := (&Parser{}).Parse(typedStruct(t, "listener: "+file), newConfigCallbacks())
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "x" {
		t.Error("regular file removed")
	}
}

func TestMetricsOfDestroyedConfigNeverPanic(t *testing.T) {
	stats := newConfigCallbacks()
	m := defineMetrics(stats)
	stats.destroy()
	m.SessionStarted(1)
	m.Command(pubsub.CmdPing, errors.New("x"))
	m.Refused(401)
	m.TicketRejected()
	m.SessionEnded(0)
}

func TestExpiredTicketIsRefused(t *testing.T) {
	p := parsePlugin(t, oneCluster+"tickets: {ttl: 1ms}\n")
	ticket := p.ticket(t, p.cfg)
	time.Sleep(20 * time.Millisecond)
	_, err := p.dial(ticket)
	wantStatus(t, err, http.StatusUnauthorized)
	if n := p.stats.value(statTicketsRejected); n != 1 {
		t.Errorf("%s = %d, want 1", statTicketsRejected, n)
	}
	if !strings.Contains(testLog.text(), sessionhost.ErrTicketExpired.Error()) {
		t.Error("expiry not logged")
	}
}

func TestMaxSessionsRefusesWith503(t *testing.T) {
	p := parsePlugin(t, oneCluster+"session: {max_sessions: 1}\n")
	c, err := p.dial(p.ticket(t, p.cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = p.dial(p.ticket(t, p.cfg))
	wantStatus(t, err, http.StatusServiceUnavailable)
}

func TestLimitsAndStatsFollowTheNewestLiveConfig(t *testing.T) {
	sock := socketPath(t)
	older := parsePluginAt(t, sock, oneCluster+"session: {max_sessions: 1}\n")
	newer := parsePluginAt(t, sock, oneCluster)
	// The newer config goes first (e.g. a rollback): the older one's limits
	// and stats take over.
	newer.cfg.Destroy()
	newer.stats.destroy()
	c, err := older.dial(older.ticket(t, older.cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testkit.Ping(t, c) // the session has started once it answers
	if n := older.stats.value(statSessionsTotal); n != 1 {
		t.Errorf("%s on the remaining config = %d, want 1", statSessionsTotal, n)
	}
	_, err = older.dial(older.ticket(t, older.cfg))
	wantStatus(t, err, http.StatusServiceUnavailable) // max_sessions: 1 again
}

func TestUpgradeAfterAnotherProcessTookTheSocketOverGets503(t *testing.T) {
	p := parsePlugin(t, oneCluster)
	// A second Envoy process (hot restart) with the same listener issues
	// its first ticket: the socket path is its own from then on.
	successor := sessionhost.NewHosts(slog.New(slog.DiscardHandler))
	m := defineMetrics(newConfigCallbacks())
	h, err := successor.Acquire(p.cfg.doc, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { successor.Release(h, m) })
	// Its first upgrade gets 503 (retry) while it takes the path over in
	// the background.
	successorFilter := &filterConfig{doc: p.cfg.doc, metrics: m, host: h, credentials: newCredentials(p.cfg.doc, time.Hour)}
	first := routedTo("kafka")
	if st := decode(successorFilter, first, upgradeHeaders()); st != api.LocalReply || first.replies[0].status != http.StatusServiceUnavailable || first.replies[0].body != bodyHostStarting {
		t.Fatalf("first upgrade of the second process: status %v replies %+v, want a 503 saying it is starting", st, first.replies)
	}
	testkit.Eventually(t, "the take-over", func() bool {
		_, err := h.Issue(&sessionhost.Grant{Cluster: "kafka", Kafka: p.cfg.doc.KafkaClusters["kafka"]}, time.Minute, 10)
		return err == nil
	})

	var cb *callbacks
	var hdr *requestHeaders
	testkit.Eventually(t, "the first process noticing the take-over", func() bool {
		cb, hdr = routedTo("kafka"), upgradeHeaders()
		return decode(p.cfg, cb, hdr) == api.LocalReply
	})
	if len(cb.replies) != 1 || cb.replies[0].status != http.StatusServiceUnavailable || cb.replies[0].body != bodyHostMoved {
		t.Fatalf("replies %+v, want a 503 saying a newer Envoy serves sessions", cb.replies)
	}
	if _, ok := hdr.Get(sessionhost.TicketHeader); ok {
		t.Error("ticket set on a refused upgrade")
	}
	// Other clusters still pass untouched.
	if st := decode(p.cfg, routedTo("web"), upgradeHeaders()); st != api.Continue {
		t.Errorf("other cluster: status %v", st)
	}
}
