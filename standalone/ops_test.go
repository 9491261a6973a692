package standalone_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/server"
	"github.com/envoy-pubsub/gateway/standalone"
)

// startWithMetrics serves yamlDoc with a metrics listener; the logs, in
// JSON, go to log.
func startWithMetrics(t *testing.T, yamlDoc string, log io.Writer) *standalone.Server {
	t.Helper()
	doc, err := config.Parse([]byte(yamlDoc))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := standalone.Start(doc, "127.0.0.1:0", standalone.Options{Logger: logger, MetricsListen: "127.0.0.1:0", ReadyTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

// scrape returns the server's metric families.
func scrape(t *testing.T, srv *standalone.Server) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + srv.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// sample returns the value of the family's series whose labels include
// labels (pairs of name and value), 0 when there is none: a counter or
// gauge's value, a histogram's count.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return 0
	}
	sum := 0.0
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func TestScrapeAfterAScriptedSessionSeesEveryFamilyMove(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(2, "t"), kfake.SeedTopics(3, "u"))
	value := strings.Repeat("v", 4<<10)
	recs := make([]testkit.Record, 16)
	for i := range recs {
		recs[i] = testkit.Record{Value: value}
	}
	testkit.Produce(t, k.ListenAddrs(), "t", 1, recs)
	for partition := range int32(3) {
		testkit.Produce(t, k.ListenAddrs(), "u", partition, []testkit.Record{{Value: "u"}})
	}
	var logs testkit.LogBuffer
	srv := startWithMetrics(t, testkit.ClusterYAML(k.ListenAddrs(), "    produce_topics: [t]\n    fetch_max_bytes: 8192\n",
		"session: {max_pending_bytes: 12288}\nlimits: {max_memory_bytes: 12288}\n"), &logs)

	// A plain request is refused with 426.
	if resp, err := http.Get("http://" + srv.Addr() + "/kafka"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}

	ctx := testCtx(t)
	c, err := client.Dial(ctx, srv.URL("kafka"), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Ping(t, c)
	// The same fetch twice: Kafka, then the record cache.
	for range 2 {
		if msgs, err := c.Fetch(ctx, "t", 1, 0); err != nil || len(msgs) == 0 {
			t.Fatalf("fetch: %d records, %v", len(msgs), err)
		}
	}
	if _, err := c.Fetch(ctx, "no-such-topic", 0, 0); err == nil {
		t.Fatal("fetch of a missing topic succeeded")
	}
	if _, err := c.Produce(ctx, "t", 0, &pb.KafkaRecord{Value: []byte("p")}); err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}, Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case push := <-sub.C():
		if len(push.GetKafkaFetchResp().GetMessages()) != 1 {
			t.Fatalf("push: %v, want the produced record", push)
		}
	case <-ctx.Done():
		t.Fatal("no push")
	}
	// Fetches of 8 KiB each in two more sessions that may hold 12 KiB each
	// and together, while the brokers hold every fetch: of two fetches in
	// one session, one holds its 8 KiB and the other waits for the
	// session's budget; a fetch of a third session then waits for the
	// process's.
	armed, release := atomic.Bool{}, make(chan struct{})
	k.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		if armed.Load() {
			k.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	armed.Store(true)
	dial := func() *client.Client {
		cl, err := client.Dial(ctx, srv.URL("kafka"), client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	other, third := dial(), dial()
	var wg sync.WaitGroup
	fetch := func(cl *client.Client, partition int32) {
		wg.Go(func() {
			if msgs, err := cl.Fetch(ctx, "u", partition, 0); err != nil || len(msgs) == 0 {
				t.Errorf("fetch of u/%d: %d records, %v", partition, len(msgs), err)
			}
		})
	}
	fams := scrape(t, srv)
	sessionWaits, memoryWaits := sample(fams, "pubsub_session_budget_waits_total"), sample(fams, "pubsub_memory_budget_waits_total")
	fetch(other, 0)
	fetch(other, 1)
	testkit.Eventually(t, "a reservation waited for the session's budget", func() bool {
		return sample(scrape(t, srv), "pubsub_session_budget_waits_total") > sessionWaits
	})
	fetch(third, 2)
	testkit.Eventually(t, "a reservation waited for the process's budget", func() bool {
		return sample(scrape(t, srv), "pubsub_memory_budget_waits_total") > memoryWaits
	})
	armed.Store(false)
	close(release)
	wg.Wait()
	// One after the other, so that the scripted session's line is the last
	// (the session's end is counted before it is logged).
	for i, cl := range []*client.Client{other, third, c} {
		cl.Close()
		testkit.Eventually(t, "the session's end counted and logged", func() bool {
			return sample(scrape(t, srv), "pubsub_sessions_closed_total", "code", "1000") == float64(i+1) &&
				strings.Count(logs.String(), `"msg":"`+server.SessionEndMessage+`"`) == i+1
		})
	}

	fams = scrape(t, srv)
	for _, want := range []struct {
		name   string
		labels []string
	}{
		{"pubsub_sessions_opened_total", nil},
		{"pubsub_sessions_closed_total", []string{"code", "1000"}},
		{"pubsub_commands_total", []string{"command", "cmd_kafka_fetch", "outcome", "ok"}},
		{"pubsub_commands_total", []string{"command", "cmd_kafka_fetch", "outcome", "error"}},
		{"pubsub_commands_total", []string{"command", "cmd_kafka_produce", "outcome", "ok"}},
		{"pubsub_commands_total", []string{"command", "cmd_ping", "outcome", "ok"}},
		{"pubsub_received_bytes_total", nil},
		{"pubsub_sent_bytes_total", nil},
		{"pubsub_pushes_total", nil},
		{"pubsub_records_delivered_total", nil},
		{"pubsub_upgrades_refused_total", []string{"status", "426", "reason", "not_upgrade"}},
		{"pubsub_kafka_requests_total", []string{"kind", "Fetch", "error", "none"}},
		{"pubsub_kafka_requests_total", []string{"kind", "Produce", "error", "none"}},
		{"pubsub_record_cache_lookups_total", []string{"result", "hit"}},
		{"pubsub_record_cache_lookups_total", []string{"result", "miss"}},
		{"pubsub_record_cache_bytes", nil},
		{"pubsub_session_budget_waits_total", nil},
		{"pubsub_memory_budget_waits_total", nil},
		{"pubsub_consumer_lag_records", nil},
		{"pubsub_produce_ack_seconds", nil},
		{"pubsub_fetch_reply_seconds", nil},
	} {
		if v := sample(fams, want.name, want.labels...); v <= 0 {
			t.Errorf("%s%v = %v, want it moved", want.name, want.labels, v)
		}
	}
	if v := sample(fams, "pubsub_sessions_open"); v != 0 {
		t.Errorf("pubsub_sessions_open = %v after the session ended", v)
	}
	// Families this scripted session does not move (no identity, no slow
	// client, the budget empty at the end) are exported; metrics/prom's
	// tests move the close code counters.
	for _, name := range []string{"pubsub_slow_consumer_closes_total", "pubsub_token_expiries_total", "pubsub_memory_budget_bytes"} {
		if fams[name] == nil {
			t.Errorf("%s is not exported", name)
		}
	}

	// The session's one line at its end.
	var line map[string]any
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, `"msg":"`+server.SessionEndMessage+`"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line == nil {
		t.Fatalf("no session end line in:\n%s", logs.String())
	}
	want := map[string]any{"cluster": "kafka", "route": "/kafka", "close_code": float64(1000), "close_reason": ""}
	for key, v := range want {
		if line[key] != v {
			t.Errorf("session end %s = %v, want %v", key, line[key], v)
		}
	}
	if got, _ := json.Marshal(line["partitions"]); string(got) != `["t/0","t/1"]` {
		t.Errorf("session end partitions = %s, want [t/0 t/1]", got)
	}
	if line["records_sent"].(float64) < 3 || line["bytes_sent"].(float64) <= 0 || line["bytes_received"].(float64) <= 0 || line["duration"].(float64) <= 0 {
		t.Errorf("session end counts: %v", line)
	}
	if _, ok := line["subject"]; ok {
		t.Errorf("session end names a subject without an identity: %v", line)
	}
}

func TestReadyzFollowsTheBrokerAndHealthzTheProcess(t *testing.T) {
	k, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	addr := k.ListenAddrs()[0]
	srv := startWithMetrics(t, testkit.ClusterYAML([]string{addr}, "    request_timeout: 1s\n", ""), io.Discard)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + srv.MetricsAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("/readyz with the broker up: %d %q", code, body)
	}
	k.Close()
	testkit.Eventually(t, "/readyz turns unready without the broker", func() bool {
		code, body := get("/readyz")
		return code == 503 && strings.Contains(body, "cluster kafka:")
	})
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz without the broker: %d, want 200 (the process is alive)", code)
	}
	port, err := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
	if err != nil {
		t.Fatal(err)
	}
	testkit.Kafka(t, kfake.NumBrokers(1), kfake.Ports(port), kfake.SeedTopics(1, "t"))
	testkit.Eventually(t, "/readyz is ready again once the broker is back", func() bool {
		code, _ := get("/readyz")
		return code == 200
	})
}

func TestSessionEndLineNamesTheSubjectAndTheTokenExpiryNeverTheToken(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv, _, logs := identityServer(t, is, true, "", "t")
	token := is.Token(t, "alice", 2*time.Second, nil)
	c := dialToken(t, srv, token)
	testkit.Ping(t, c)
	testkit.WaitClosedWith(t, c, 4401)
	var line string
	testkit.Eventually(t, "the session's end is logged", func() bool {
		for l := range strings.Lines(logs.String()) {
			if strings.Contains(l, `msg="`+server.SessionEndMessage+`"`) {
				line = l
				return true
			}
		}
		return false
	})
	for _, want := range []string{"cluster=kafka", "route=/kafka", "subject=alice", "close_code=4401", `close_reason="token expired"`} {
		if !strings.Contains(line, want) {
			t.Errorf("session end line lacks %s: %s", want, line)
		}
	}
	if strings.Contains(logs.String(), token) {
		t.Error("the token is in the log")
	}
}

func TestATakenMetricsAddressFailsUnlessOptional(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	doc, err := config.Parse([]byte(testkit.ClusterYAML([]string{"127.0.0.1:1"}, "", "")))
	if err != nil {
		t.Fatal(err)
	}
	opts := standalone.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MetricsListen: taken.Addr().String()}
	if srv, err := standalone.Start(doc, "127.0.0.1:0", opts); err == nil {
		srv.Shutdown(context.Background())
		t.Fatal("Start served with its metrics address taken, want an error")
	}
	opts.MetricsOptional = true
	srv, err := standalone.Start(doc, "127.0.0.1:0", opts)
	if err != nil {
		t.Fatalf("Start with an optional metrics address that is taken: %v", err)
	}
	defer srv.Shutdown(context.Background())
	if a := srv.MetricsAddr(); a != "" {
		t.Errorf("MetricsAddr = %q, want none", a)
	}
}
