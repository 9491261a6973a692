// Package abitest proves the built Envoy filter library through its C ABI:
// it builds the .so with build.sh and a fake Envoy host in C, loads the
// library the way Envoy does, drives DecodeHeaders for the three request
// cases, and runs a full pub-sub session over the library's unix socket
// against an in-process Kafka with the ticket the library issued. A second
// host process then loads the library with the same socket path, as a
// hot-restarted Envoy does, and takes the path over while the first keeps
// its session until it drains.
package abitest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	xdstype "github.com/cncf/xds/go/xds/type/v3"
	"github.com/gobwas/ws"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
)

const (
	saslUser     = "app"
	saslPassword = "s3cret-held-by-envoy"
	topic        = "orders"
)

var ticketFormat = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestSharedLibraryInFakeEnvoy(t *testing.T) {
	work := t.TempDir()
	so, host := built(t)

	kafka := testkit.Kafka(t, kfake.SeedTopics(1, topic), kfake.EnableSASL(), kfake.Superuser("PLAIN", saslUser, saslPassword))
	brokers := kafka.ListenAddrs()
	testkit.Produce(t, brokers, topic, 0, testkit.Numbered(5), kgo.SASL(plain.Auth{User: saslUser, Pass: saslPassword}.AsMechanism()))

	sock := shortSocketPath(t)
	filterCfg := writeConfig(t, work, "filter.pb", map[string]any{
		"listener": sock,
		"kafka_clusters": map[string]any{
			"kafka": map[string]any{
				"brokers": toAny(brokers),
				"sasl":    map[string]any{"mechanism": "PLAIN", "username": saslUser, "password_secret": "kafka-app"},
				"topics":  []any{topic, "audit-*"},
			},
			"kafka-nosecret": map[string]any{
				"brokers": toAny(brokers),
				"sasl":    map[string]any{"mechanism": "PLAIN", "username": saslUser, "password_secret": "absent"},
			},
		},
		"tickets": map[string]any{"ttl": "30s"},
	})
	routeCfg := writeConfig(t, work, "route.pb", map[string]any{"topics": []any{topic}})
	badFilterCfg := writeConfig(t, work, "bad-filter.pb", map[string]any{"listener": sock, "kafka_clusters": map[string]any{"kafka": map[string]any{"brokers": []any{}}}})
	badRouteCfg := writeConfig(t, work, "bad-route.pb", map[string]any{"topicz": []any{topic}})

	e := startHost(t, host, so)
	e.expect(t, "LOADED")
	e.send(t, "secret kafka-app "+saslPassword)
	e.expect(t, "OK")

	filterID := e.config(t, "filter", filterCfg)
	if filterID == 0 {
		t.Fatalf("filter config rejected; log:\n%s", e.log())
	}
	routeID := e.config(t, "route", routeCfg)
	merged := e.merge(t, filterID, routeID)
	if id := e.config(t, "filter", badFilterCfg); id != 0 {
		t.Errorf("a filter config without brokers was accepted (id %d)", id)
	}
	e.waitLog(t, "kafka_clusters.kafka.brokers")
	badRouteID := e.config(t, "route", badRouteCfg)
	if badRouteID == 0 {
		t.Fatal("a bad route config failed to parse: Envoy would abort at request time")
	}
	badMerged := e.merge(t, filterID, badRouteID)

	upgrade := []string{":method=GET", ":path=/kafka", ":authority=gateway", "connection=Upgrade", "upgrade=websocket", "sec-websocket-version=13"}

	// 1. Kafka-scheme cluster + upgrade: client ticket stripped, fresh one set.
	r := e.request(t, merged, "kafka", 0, append(upgrade, "x-pubsub-ticket=forged-by-client")...)
	upgraded := r // its stream stays open while the router proxies the upgrade
	if r.status != statusContinue || r.reply != "" {
		t.Fatalf("upgrade: %+v, want Continue without local reply", r)
	}
	ticket := r.headers["x-pubsub-ticket"]
	if len(ticket) != 1 || !ticketFormat.MatchString(ticket[0]) {
		t.Fatalf("x-pubsub-ticket = %q, want one 128-bit hex ticket", ticket)
	}
	if !r.mutated("remove x-pubsub-ticket") || !r.mutated("set x-pubsub-ticket") {
		t.Errorf("mutations = %v, want the client ticket removed and a new one set", r.mutations)
	}
	t.Logf("issued ticket %s", ticket[0])

	// 2. Kafka-scheme cluster without upgrade: 426.
	r = e.requestEnded(t, merged, "kafka", 1, ":method=GET", ":path=/kafka", ":authority=gateway")
	if r.status != statusLocalReply || !strings.HasPrefix(r.reply, "426 ") || !strings.Contains(r.reply, "WebSocket") {
		t.Errorf("plain request: %+v, want a 426 local reply asking for WebSocket", r)
	}
	if len(r.replyHeaders) != 0 || len(r.mutations) != 0 { // Envoy strips Upgrade from this response anyway
		t.Errorf("plain request: reply headers %v, mutations %v", r.replyHeaders, r.mutations)
	}

	// 3. Any other cluster: untouched.
	r = e.requestEnded(t, merged, "web", 0, append(upgrade, "x-pubsub-ticket=client-value")...)
	if r.status != statusContinue || r.reply != "" || len(r.mutations) != 0 || r.headers["x-pubsub-ticket"][0] != "client-value" {
		t.Errorf("other cluster: %+v, want Continue with nothing touched", r)
	}
	r = e.requestEnded(t, filterID, "-", 1, upgrade...)
	if r.status != statusContinue || len(r.mutations) != 0 {
		t.Errorf("no routed cluster: %+v", r)
	}

	// A secret Envoy does not have: 503, no ticket.
	r = e.requestEnded(t, filterID, "kafka-nosecret", 0, upgrade...)
	if r.status != statusLocalReply || !strings.HasPrefix(r.reply, "503 ") || len(r.headers["x-pubsub-ticket"]) != 0 {
		t.Errorf("missing secret: %+v, want a 503 local reply", r)
	}
	// A bad route config refuses kafka upgrades instead of failing.
	r = e.requestEnded(t, badMerged, "kafka", 0, upgrade...)
	if r.status != statusLocalReply || !strings.HasPrefix(r.reply, "500 ") {
		t.Errorf("bad route: %+v, want a 500 local reply", r)
	}

	// The session, over the library's socket, with the issued ticket.
	c, err := dial(sock, ticket[0])
	if err != nil {
		t.Fatalf("redeeming the ticket: %v\nlog:\n%s", err, e.log())
	}
	defer c.Close()
	runSession(t, c)
	e.end(t, upgraded) // Envoy destroys the stream after the session
	_, err = dial(sock, ticket[0])
	wantStatus(t, "reused ticket", err, http.StatusUnauthorized)
	_, err = dial(sock, "00112233445566778899aabbccddeeff")
	wantStatus(t, "forged ticket", err, http.StatusUnauthorized)

	stats := e.stats(t)
	for name, want := range map[string]int64{
		"pubsub.tickets_issued":           1,
		"pubsub.tickets_rejected":         2,
		"pubsub.upgrades_refused":         2,
		"pubsub.upgrade_required":         1,
		"pubsub.sessions_total":           1,
		"pubsub.sessions_active":          1,
		"pubsub.commands_total":           5,
		"pubsub.command_errors":           1,
		"pubsub.commands.cmd_kafka_fetch": 1,
		"pubsub.tickets_outstanding":      0,
		"pubsub.tickets_revoked":          0, // the one ticket was redeemed
	} {
		if got, ok := stats[name]; !ok || got != want {
			t.Errorf("stat %s = %d (defined %v), want %d", name, got, ok, want)
		}
	}

	// A config update: Envoy parses the new config, then destroys the old
	// one. The session server and its session stay.
	updatedID := e.config(t, "filter", filterCfg)
	if updatedID == 0 {
		t.Fatal("updated filter config rejected")
	}
	for _, id := range []uint64{merged, badMerged, routeID, badRouteID, filterID} {
		e.send(t, fmt.Sprintf("destroy %d", id))
		e.expect(t, fmt.Sprintf("DESTROYED %d", id))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, []byte("after update")); err != nil {
		t.Fatalf("session lost on config update: %v", err)
	}
	r = e.requestEnded(t, updatedID, "kafka", 1, upgrade...)
	if r.status != statusContinue || len(r.headers["x-pubsub-ticket"]) != 1 {
		t.Fatalf("upgrade with the updated config: %+v", r)
	}

	// A second Envoy process on the same socket path (hot restart) loads
	// the library and the same config while the first still serves.
	e2 := startHost(t, host, so)
	e2.expect(t, "LOADED")
	e2.send(t, "secret kafka-app "+saslPassword)
	e2.expect(t, "OK")
	secondID := e2.config(t, "filter", filterCfg)
	if secondID == 0 {
		t.Fatalf("the second process rejected the config while the first serves the socket; log:\n%s", e2.log())
	}
	firstSocket, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	// Its first upgrade starts taking the socket path over, off the
	// worker, and gets 503 (retry) until it has; the session lands there.
	r = e2.requestEnded(t, secondID, "kafka", 0, upgrade...)
	if r.status != statusLocalReply || !strings.HasPrefix(r.reply, "503 pubsub_session_server_starting") {
		t.Fatalf("first upgrade in the second process: %+v, want 503 starting; log:\n%s", r, e2.log())
	}
	testkit.Eventually(t, "the second process's take-over", func() bool {
		r = e2.request(t, secondID, "kafka", 0, upgrade...)
		if r.status != statusContinue {
			e2.end(t, r)
		}
		return r.status == statusContinue
	})
	if len(r.headers["x-pubsub-ticket"]) != 1 {
		t.Fatalf("upgrade in the second process: %+v; log:\n%s", r, e2.log())
	}
	c2, err := dial(sock, r.headers["x-pubsub-ticket"][0])
	if err != nil {
		t.Fatalf("session with the second process's ticket: %v\nlog:\n%s", err, e2.log())
	}
	defer c2.Close()
	e2.end(t, r)
	if msgs, err := c2.Fetch(ctx, topic, 0, 4); err != nil || len(msgs) != 1 || msgs[0].GetOffset() != 4 {
		t.Fatalf("fetch from 4 in the second process's session = %v, %v; want record 4", msgs, err)
	}
	if fi, err := os.Stat(sock); err != nil || os.SameFile(fi, firstSocket) {
		t.Errorf("socket path after the take-over: %v, %v; want the second process's socket", fi, err)
	}
	// The first keeps its session and sends new upgrades away with 503.
	if _, err := c.Ping(ctx, []byte("after take-over")); err != nil {
		t.Fatalf("first process's session lost on take-over: %v", err)
	}
	// (once its watcher has seen the take-over, within 100ms)
	testkit.Eventually(t, "the first process refusing upgrades", func() bool {
		r = e.requestEnded(t, updatedID, "kafka", 0, upgrade...)
		return r.status == statusLocalReply
	})
	if !strings.HasPrefix(r.reply, "503 ") || !strings.Contains(r.reply, "newer Envoy") {
		t.Errorf("upgrade in the superseded process: %+v, want a 503 local reply", r)
	}

	// Destroying the first's last filter-level config drains its session;
	// the socket path stays the second's.
	e.send(t, fmt.Sprintf("destroy %d", updatedID))
	e.expect(t, fmt.Sprintf("DESTROYED %d", updatedID))
	waitGoingAway(t, "first process's session", c)
	if _, err := c2.Ping(ctx, []byte("second")); err != nil {
		t.Fatalf("second process's session after the first drained: %v", err)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("the first process's drain removed the second's socket: %v", err)
	}

	fin, violations := e.finish(t)
	if fin[0] != fin[1] || fin[2] != fin[3] {
		t.Errorf("finalized %d of %d requests and %d of %d configs: the library leaks Envoy objects", fin[0], fin[1], fin[2], fin[3])
	}
	if violations != 0 {
		t.Errorf("%d ABI rule violations; log:\n%s", violations, e.log())
	}

	// The second's last config drains it and removes the socket it owns.
	e2.send(t, fmt.Sprintf("destroy %d", secondID))
	e2.expect(t, fmt.Sprintf("DESTROYED %d", secondID))
	waitGoingAway(t, "second process's session", c2)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file left after drain: %v", err)
	}
	if _, violations := e2.finish(t); violations != 0 {
		t.Errorf("%d ABI rule violations in the second process; log:\n%s", violations, e2.log())
	}
	for _, log := range []string{e.log(), e2.log()} {
		for _, secret := range []string{saslPassword, ticket[0]} {
			if strings.Contains(log, secret) {
				t.Errorf("the library logged %q", secret)
			}
		}
	}
}

// waitGoingAway waits for the server to close c with 1001.
func waitGoingAway(t *testing.T, what string, c *client.Client) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s still open after its process's last config was destroyed", what)
	}
	var ce client.CloseError
	if err := c.Err(); !errors.As(err, &ce) || ce.Code != ws.StatusGoingAway {
		t.Errorf("%s ended with %v, want close 1001", what, err)
	}
}

// runSession runs ping, list offset and fetch through the session.
func runSession(t *testing.T, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if state, err := c.Ping(ctx, []byte("abi")); err != nil || string(state) != "abi" {
		t.Fatalf("ping = %q, %v", state, err)
	}
	for ts, want := range map[int64]int64{-2: 0, -1: 5} {
		off, err := c.ListOffset(ctx, topic, 0, ts)
		if err != nil || off != want {
			t.Fatalf("list offset %d = %d, %v; want %d", ts, off, err, want)
		}
	}
	msgs, err := c.Fetch(ctx, topic, 0, 2)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if len(msgs) != 3 || msgs[0].GetOffset() != 2 || string(msgs[0].GetValue()) != "v2" || string(msgs[2].GetKey()) != "k4" {
		t.Fatalf("fetch from 2 = %v, want records 2..4", msgs)
	}
	// The route narrows the cluster's [orders, audit-*] to [orders].
	if _, err := c.ListOffset(ctx, "audit-eu", 0, -1); err == nil || !strings.Contains(err.Error(), "topic not allowed") {
		t.Errorf("list offset of a topic the route narrows out: %v", err)
	}
}

// library is the .so and the fake host, built once for the package's tests
// and benchmarks.
var library struct {
	once      sync.Once
	dir       string
	so, host  string
	buildFail string
}

func TestMain(m *testing.M) {
	code := m.Run()
	if library.dir != "" {
		os.RemoveAll(library.dir)
	}
	os.Exit(code)
}

// built returns the library and the host, building them on first use.
func built(tb testing.TB) (so, host string) {
	tb.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		tb.Fatal("gcc not found: the ABI test builds a fake Envoy host in C and needs a C compiler (install gcc)")
	}
	library.once.Do(func() {
		dir, err := os.MkdirTemp("", "abitest")
		if err != nil {
			library.buildFail = err.Error()
			return
		}
		library.dir = dir
		b := &buildRecorder{TB: tb}
		library.so = buildLibrary(b, filepath.Join(dir, "envoy-pubsub.so"))
		if b.failed == "" {
			library.host = buildHost(b, filepath.Join(dir, "fakeenvoy"))
		}
		library.buildFail = b.failed
	})
	if library.buildFail != "" {
		tb.Fatal(library.buildFail)
	}
	return library.so, library.host
}

// buildRecorder keeps the build's failure for every later test, instead of
// failing only the test that happened to build.
type buildRecorder struct {
	testing.TB
	failed string
}

func (b *buildRecorder) Fatalf(format string, args ...any) {
	b.failed = fmt.Sprintf(format, args...)
	b.TB.Fatalf(format, args...)
}

func (b *buildRecorder) Errorf(format string, args ...any) {
	b.failed = fmt.Sprintf(format, args...)
	b.TB.Errorf(format, args...)
}

// buildLibrary runs build.sh into out and checks its report.
func buildLibrary(t testing.TB, out string) string {
	t.Helper()
	script, err := filepath.Abs(filepath.Join("..", "build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(script)
	cmd.Dir = t.TempDir() // build.sh works from any directory
	cmd.Env = append(os.Environ(), "OUT="+out)
	report, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("build.sh: %v\n%s", err, report)
	}
	if !strings.Contains(string(report), out) || !regexp.MustCompile(`GLIBC_2\.[0-9]+`).Match(report) {
		t.Errorf("build.sh report does not name the library and its glibc version:\n%s", report)
	}
	return out
}

// buildHost compiles the fake Envoy host against the SDK's api.h.
func buildHost(t testing.TB, out string) string {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/envoyproxy/envoy").Output()
	if err != nil {
		t.Fatalf("locating the Envoy SDK module: %v", err)
	}
	api := filepath.Join(strings.TrimSpace(string(dir)), "contrib", "golang", "common", "go", "api")
	cmd := exec.Command("gcc", "-Wall", "-Wextra", "-Werror", "-rdynamic", "-I", api,
		"-o", out, filepath.Join("testdata", "fakeenvoy.c"), "-ldl", "-lpthread")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, msg)
	}
	return out
}

// writeConfig writes doc as the serialized Any of an xds.type.v3.TypedStruct,
// the bytes Envoy hands the library as plugin_config.
func writeConfig(t testing.TB, dir, name string, doc map[string]any) string {
	t.Helper()
	s, err := structpb.NewStruct(doc)
	if err != nil {
		t.Fatal(err)
	}
	a, err := anypb.New(&xdstype.TypedStruct{TypeUrl: "type.googleapis.com/envoy.pubsub", Value: s})
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// shortSocketPath returns a socket path within the 108 bytes of sun_path.
func shortSocketPath(t testing.TB) string {
	dir, err := os.MkdirTemp("", "abi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "pubsub.sock")
}

func dial(sock, ticket string) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return client.Dial(ctx, "ws://gateway/kafka", client.Options{
		Header: http.Header{"X-Pubsub-Ticket": {ticket}},
		NetDial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	})
}

func wantStatus(t *testing.T, what string, err error, status int) {
	t.Helper()
	var se ws.StatusError
	if !errors.As(err, &se) || int(se) != status {
		t.Errorf("%s: %v, want HTTP %d", what, err, status)
	}
}

// Go filter status codes (api.StatusType) as the host prints them.
const (
	statusLocalReply = 1
	statusContinue   = 2
)

// fakeEnvoy is a running host process and its line protocol.
type fakeEnvoy struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *lockedBuffer
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startHost(t testing.TB, host, so string) *fakeEnvoy {
	t.Helper()
	e := &fakeEnvoy{cmd: exec.Command(host, so), lines: make(chan string, 256), stderr: &lockedBuffer{}}
	e.cmd.Stderr = e.stderr
	var err error
	if e.stdin, err = e.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := e.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(e.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			e.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		e.stdin.Close()
		done := make(chan struct{})
		go func() { e.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			e.cmd.Process.Kill()
			<-done
		}
	})
	return e
}

func (e *fakeEnvoy) log() string { return e.stderr.String() }

// waitLog waits for text to appear in the library's log, which reaches the
// test through a pipe after the command that caused it was answered.
func (e *fakeEnvoy) waitLog(t testing.TB, text string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(e.log(), text); {
		if time.Now().After(deadline) {
			t.Errorf("%q never logged; log:\n%s", text, e.log())
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *fakeEnvoy) send(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(e.stdin, line+"\n"); err != nil {
		t.Fatalf("host: %v; log:\n%s", err, e.log())
	}
}

// next returns the host's next output line.
func (e *fakeEnvoy) next(t testing.TB) string {
	t.Helper()
	select {
	case line, ok := <-e.lines:
		if !ok {
			t.Fatalf("host exited; log:\n%s", e.log())
		}
		if strings.HasPrefix(line, "ERROR") {
			t.Fatalf("host: %s", line)
		}
		return line
	case <-time.After(30 * time.Second):
		t.Fatalf("host silent; log:\n%s", e.log())
	}
	return ""
}

func (e *fakeEnvoy) expect(t testing.TB, want string) {
	t.Helper()
	if got := e.next(t); got != want {
		t.Fatalf("host said %q, want %q", got, want)
	}
}

// number reads a "PREFIX N" line.
func (e *fakeEnvoy) number(t testing.TB, prefix string) uint64 {
	t.Helper()
	line := e.next(t)
	v, ok := strings.CutPrefix(line, prefix+" ")
	n, err := strconv.ParseUint(v, 10, 64)
	if !ok || err != nil {
		t.Fatalf("host said %q, want %s N", line, prefix)
	}
	return n
}

func (e *fakeEnvoy) config(t testing.TB, kind, file string) uint64 {
	t.Helper()
	e.send(t, "config "+kind+" "+file)
	return e.number(t, "CONFIG")
}

func (e *fakeEnvoy) merge(t testing.TB, parent, child uint64) uint64 {
	t.Helper()
	e.send(t, fmt.Sprintf("merge %d %d", parent, child))
	id := e.number(t, "MERGED")
	if id == 0 {
		t.Fatal("merge returned config id 0")
	}
	return id
}

// decoded is what the host saw of one DecodeHeaders call.
type decoded struct {
	stream       int // the open stream's number, for end
	status       int
	reply        string // "CODE DETAILS BODY"
	replyHeaders map[string]string
	mutations    []string
	headers      map[string][]string
}

func (d decoded) mutated(m string) bool {
	for _, x := range d.mutations {
		if x == m {
			return true
		}
	}
	return false
}

func (e *fakeEnvoy) request(t testing.TB, configID uint64, cluster string, worker int, headers ...string) decoded {
	t.Helper()
	e.send(t, fmt.Sprintf("request %d %s %d %s", configID, cluster, worker, strings.Join(headers, " ")))
	d := decoded{status: int(e.number(t, "STATUS")), replyHeaders: map[string]string{}, headers: map[string][]string{}}
	for {
		line := e.next(t)
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "END":
			n, err := strconv.Atoi(rest)
			if err != nil {
				t.Fatalf("host said %q, want END STREAM", line)
			}
			d.stream = n
			return d
		case "REPLY":
			d.reply = rest
		case "REPLYHEADER":
			k, v, _ := strings.Cut(rest, " ")
			d.replyHeaders[k] = v
		case "MUTATION":
			d.mutations = append(d.mutations, rest)
		case "HEADER":
			k, v, _ := strings.Cut(rest, " ")
			d.headers[k] = append(d.headers[k], v)
		default:
			t.Fatalf("host said %q in a request report", line)
		}
	}
}

// end ends a stream as Envoy's onDestroy does.
func (e *fakeEnvoy) end(t testing.TB, d decoded) {
	t.Helper()
	e.send(t, fmt.Sprintf("end %d", d.stream))
	e.expect(t, fmt.Sprintf("ENDED %d", d.stream))
}

// requestEnded runs a request whose stream ends at once.
func (e *fakeEnvoy) requestEnded(t testing.TB, configID uint64, cluster string, worker int, headers ...string) decoded {
	t.Helper()
	d := e.request(t, configID, cluster, worker, headers...)
	e.end(t, d)
	return d
}

func (e *fakeEnvoy) stats(t testing.TB) map[string]int64 {
	t.Helper()
	e.send(t, "stats")
	stats := map[string]int64{}
	for {
		line := e.next(t)
		if line == "END" {
			return stats
		}
		var name string
		var v int64
		if _, err := fmt.Sscanf(line, "METRIC %s %d", &name, &v); err != nil {
			t.Fatalf("host said %q in stats", line)
		}
		stats[name] = v
	}
}

// finish closes the host's input and reads its final report: finalized and
// created requests and configs, and the number of ABI rule violations.
func (e *fakeEnvoy) finish(t testing.TB) ([4]int, int) {
	t.Helper()
	e.stdin.Close()
	var fin [4]int
	line := e.next(t)
	if _, err := fmt.Sscanf(line, "FINALIZED %d %d %d %d", &fin[0], &fin[1], &fin[2], &fin[3]); err != nil {
		t.Fatalf("host said %q, want FINALIZED", line)
	}
	violations := int(e.number(t, "VIOLATIONS"))
	if err := e.cmd.Wait(); err != nil {
		t.Errorf("host: %v", err)
	}
	return fin, violations
}
