package sessionhost

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/testkit"
)

// In these tests each Hosts stands for one Envoy process: the code path of a
// second process taking a socket over is the same, in one test process.

// logBuffer collects a Hosts' log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newHosts(t *testing.T) (*Hosts, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	return NewHosts(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))), logs
}

// countingStats counts a host's events.
type countingStats struct {
	mu                sync.Mutex
	refused, rejected int
	active            int64
	outstanding       int64
	started           chan struct{} // a value per session started
}

func newStats() *countingStats { return &countingStats{started: make(chan struct{}, 100)} }

func (s *countingStats) SessionStarted(active int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active = active
	s.started <- struct{}{}
}

func (s *countingStats) SessionEnded(active int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.active = active
}

func (s *countingStats) Refused(int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused++
}

func (s *countingStats) Command(string, error) {}

func (s *countingStats) TicketRejected() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejected++
}

// socketPath returns a fresh unix socket path (short enough for sun_path).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "host")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "pubsub.sock")
}

func document(t *testing.T, sock string) *config.Document {
	t.Helper()
	doc, err := config.Parse([]byte(`{"listener": "` + sock + `", "kafka_clusters": {"kafka": {"brokers": ["127.0.0.1:1"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// acquire starts or joins the host of sock in hs, released when the test
// ends (a second release is a no-op).
func acquire(t *testing.T, hs *Hosts, sock string) (*Host, *countingStats) {
	t.Helper()
	stats := newStats()
	h, err := hs.Acquire(document(t, sock), stats)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Release(h, stats) })
	return h, stats
}

// issue issues a ticket of h for the test's cluster.
func issue(t *testing.T, h *Host) string {
	t.Helper()
	v, err := h.Issue(&Grant{Cluster: "kafka", Kafka: &config.KafkaCluster{Brokers: []string{"127.0.0.1:1"}}}, 30*time.Second, 100)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	return v
}

// issueTakingOver issues h's first ticket on a socket another process
// serves: the take-over runs in the background and Issue answers
// ErrStarting until it is done.
func issueTakingOver(t *testing.T, h *Host) string {
	t.Helper()
	var v string
	testkit.Eventually(t, "the take-over of the socket", func() bool {
		var err error
		v, err = h.Issue(&Grant{Cluster: "kafka", Kafka: &config.KafkaCluster{Brokers: []string{"127.0.0.1:1"}}}, 30*time.Second, 100)
		if err != nil && !errors.Is(err, ErrStarting) {
			t.Fatalf("issue: %v", err)
		}
		return err == nil
	})
	return v
}

// session opens a pub-sub session on sock with ticket v.
func session(t *testing.T, sock, v string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://pubsub/kafka", client.Options{
		Header: http.Header{TicketHeader: {v}},
		NetDial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	})
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func stat(t *testing.T, path string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func TestSecondProcessTakesTheSocketOverWhileTheFirstServes(t *testing.T) {
	sock := socketPath(t)
	first, _ := newHosts(t)
	a, aStats := acquire(t, first, sock)
	old := session(t, sock, issue(t, a))
	firstSocket := stat(t, sock)

	// The second process starts (hot restart): it finds the socket served
	// and leaves it alone until it issues a ticket.
	second, secondLog := newHosts(t)
	b, bStats := acquire(t, second, sock)
	if !os.SameFile(stat(t, sock), firstSocket) {
		t.Fatal("the second process took the socket over before issuing a ticket")
	}
	if !strings.Contains(secondLog.String(), "another process serves the session socket") {
		t.Errorf("standby not logged:\n%s", secondLog.String())
	}
	oldToo := session(t, sock, issue(t, a))

	// Its first upgrade starts taking the path over, off the worker; its
	// sessions arrive there.
	if _, err := b.Issue(&Grant{Cluster: "kafka"}, time.Minute, 10); !errors.Is(err, ErrStarting) {
		t.Fatalf("first issue of the second process: %v, want ErrStarting", err)
	}
	moved := session(t, sock, issueTakingOver(t, b))
	if os.SameFile(stat(t, sock), firstSocket) {
		t.Fatal("the socket file is still the first process's")
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket after take-over: %v, %v; want mode 0600", fi, err)
	}
	testkit.Ping(t, moved)

	// The first keeps serving its sessions and, once its watcher has seen
	// the take-over (within ownershipPoll), refuses new tickets.
	testkit.Eventually(t, "the first process refusing tickets", func() bool {
		_, err := a.Issue(&Grant{Cluster: "kafka"}, time.Minute, 10)
		return errors.Is(err, ErrSuperseded)
	})
	testkit.Ping(t, old)
	testkit.Ping(t, oldToo)

	// The first drains: its sessions get 1001, the second's socket stays.
	first.Release(a, newStats()) // a release without a hold is a no-op
	testkit.Ping(t, old)
	first.Release(a, aStats)
	testkit.WaitClosedWith(t, old, ws.StatusGoingAway)
	testkit.WaitClosedWith(t, oldToo, ws.StatusGoingAway)
	<-a.Drained()
	testkit.Ping(t, moved)
	testkit.Ping(t, session(t, sock, issue(t, b)))

	// The second's last release removes the socket it owns.
	second.Release(b, bStats)
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after the owner's drain: %v", err)
	}
	testkit.WaitClosedWith(t, moved, ws.StatusGoingAway)
}

func TestValidatingProcessLeavesTheSocketAlone(t *testing.T) {
	sock := socketPath(t)
	live, _ := newHosts(t)
	h, _ := acquire(t, live, sock)
	before := stat(t, sock)

	// envoy --mode validate parses the configuration and exits.
	validate, _ := newHosts(t)
	v, stats := acquire(t, validate, sock)
	validate.Release(v, stats)
	<-v.Drained()

	if !os.SameFile(stat(t, sock), before) {
		t.Fatal("the validating process replaced the live socket")
	}
	testkit.Ping(t, session(t, sock, issue(t, h)))
	entries, err := os.ReadDir(filepath.Dir(sock))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "pubsub.sock" && strings.Join(names, " ") != "pubsub.sock pubsub.sock.lock" {
		t.Errorf("socket directory holds %v, want only the socket (and its lock)", names)
	}
}

func TestReleaseDrainsInTheBackground(t *testing.T) {
	sock := socketPath(t)
	hs, _ := newHosts(t)
	h, stats := acquire(t, hs, sock)
	// A client that never answers the close frame: its session lingers
	// for the close handshake before it ends.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, _, err := ws.Dialer{
		Header: ws.HandshakeHeaderHTTP(http.Header{TicketHeader: {issue(t, h)}}),
		NetDial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}.Dial(ctx, "ws://pubsub/kafka")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	<-stats.started

	hs.Release(h, stats)
	select {
	case <-h.Drained():
		t.Fatal("Release waited for the drain")
	default:
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket still there when Release returned: %v", err)
	}
	// A successor in the same process binds the path at once.
	next, _ := acquire(t, hs, sock)
	if next == h {
		t.Fatal("the draining host was reused")
	}
	testkit.Ping(t, session(t, sock, issue(t, next)))

	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	hdr, err := ws.ReadHeader(conn)
	if err != nil || hdr.OpCode != ws.OpClose {
		t.Fatalf("frame %+v, %v; want the close frame", hdr, err)
	}
	payload := make([]byte, hdr.Length)
	if _, err := conn.Read(payload); err != nil {
		t.Fatal(err)
	}
	if code, _ := ws.ParseCloseFrameData(payload); code != ws.StatusGoingAway {
		t.Errorf("close code %d, want 1001", code)
	}
	select {
	case <-h.Drained():
	case <-time.After(10 * time.Second):
		t.Fatal("drain never finished")
	}
}

func TestStaleSocketIsReplaced(t *testing.T) {
	sock := socketPath(t)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // the file stays, nothing answers: a crashed process's socket
	hs, _ := newHosts(t)
	h, _ := acquire(t, hs, sock)
	testkit.Ping(t, session(t, sock, issue(t, h)))
}

func TestAbstractSocket(t *testing.T) {
	name := "@pubsub-host-test-" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "")
	hs, _ := newHosts(t)
	h, _ := acquire(t, hs, name)
	testkit.Ping(t, session(t, name, issue(t, h)))
	other, _ := newHosts(t)
	if _, err := other.Acquire(document(t, name), newStats()); err == nil || !strings.Contains(err.Error(), "an abstract socket cannot be handed over") {
		t.Errorf("second process on a live abstract socket: %v", err)
	}
}

// A configuration that changes session limits starts a new generation of
// the session server; its sessions and the old generation's share one
// process memory budget while limits.max_memory_bytes stays the same, and a
// new one sizes a new budget.
func TestGenerationsShareTheProcessMemoryBudget(t *testing.T) {
	hs, _ := newHosts(t)
	sock := socketPath(t)
	h, _ := acquire(t, hs, sock)
	first := h.current.memory

	doc := document(t, sock)
	doc.Session.MaxInFlight++
	stats := newStats()
	if _, err := hs.Acquire(doc, stats); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Release(h, stats) })
	if h.current.limits != doc.Session || len(h.retired) != 1 {
		t.Fatalf("new session limits did not start a new generation (%d retired)", len(h.retired))
	}
	if h.current.memory != first || first == nil {
		t.Fatal("the new generation has a memory budget of its own: old and new sessions could hold twice limits.max_memory_bytes")
	}

	doc = document(t, sock)
	doc.Session.MaxInFlight++ // the same session limits: only the process's budget changes
	doc.Limits.MaxMemoryBytes *= 2
	if _, err := hs.Acquire(doc, stats); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Release(h, stats) })
	if len(h.retired) != 2 || h.current.process != doc.Limits || h.current.memory == first {
		t.Fatal("a new limits.max_memory_bytes did not size a new budget")
	}
}

func (s *countingStats) TicketsOutstanding(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outstanding = n
}

// An HTTP/2 WebSocket reaches the session socket as Envoy forwards it, a
// GET upgrade without Sec-WebSocket-Key; with a ticket it is a session, the
// keyed HTTP/1.1 form still is, and without a ticket it gets 401.
func TestKeylessUpgradeFromEnvoyIsServed(t *testing.T) {
	sock := socketPath(t)
	hs, _ := newHosts(t)
	h, _ := acquire(t, hs, sock)
	dialUnix := func() net.Conn {
		t.Helper()
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	conn := dialUnix()
	resp, br := testkit.RawUpgrade(t, conn, testkit.EnvoyH2UpgradeRequest("/kafka", TicketHeader+": "+issue(t, h)+"\r\n"))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("keyless upgrade with a ticket: %d", resp.StatusCode)
	}
	testkit.RawPing(t, conn, br, "h2")
	testkit.Ping(t, session(t, sock, issue(t, h)))
	resp, _ = testkit.RawUpgrade(t, dialUnix(), testkit.EnvoyH2UpgradeRequest("/kafka", ""))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("keyless upgrade without a ticket: %d, want 401", resp.StatusCode)
	}
}

// Once its last configuration is released, a host logs nothing to the live
// logger and reports nothing to that configuration's stats (inside Envoy:
// no api.Log* or metric call for a destroyed configuration): its drain and
// its last sessions log to the detached handler.
func TestReleasedHostLogsOnlyToTheDetachedHandler(t *testing.T) {
	hs, live := newHosts(t)
	detached := &logBuffer{}
	hs.detached = slog.NewTextHandler(detached, &slog.HandlerOptions{Level: slog.LevelDebug})
	sock := socketPath(t)
	h, stats := acquire(t, hs, sock)
	c := session(t, sock, issue(t, h))
	testkit.Ping(t, c)
	if !strings.Contains(live.String(), "session server listening") {
		t.Fatalf("the live log got nothing while the host was held:\n%s", live.String())
	}

	before := live.String()
	hs.Release(h, stats)
	testkit.WaitClosedWith(t, c, ws.StatusGoingAway)
	<-h.Drained()
	if after := live.String(); after != before {
		t.Errorf("logged to the live logger after the release:\n%s", strings.TrimPrefix(after, before))
	}
	if !strings.Contains(detached.String(), "session server drained") {
		t.Errorf("the drain was not logged to the detached handler:\n%s", detached.String())
	}
	// Nor do the released configuration's stats hear of the session's end.
	stats.mu.Lock()
	defer stats.mu.Unlock()
	if stats.active != 1 {
		t.Errorf("the released configuration's stats were told of %d active sessions after the release", stats.active)
	}
}

// issueFor issues a ticket of h for a stream of the configuration issuer.
func issueFor(t *testing.T, h *Host, issuer *config.Document) string {
	t.Helper()
	v, err := h.Issue(&Grant{Cluster: "kafka", Kafka: &config.KafkaCluster{Brokers: []string{"127.0.0.1:1"}}, Issuer: issuer}, 30*time.Second, 100)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	return v
}

// A listener update replaces a configuration and Envoy drains the old
// listener for session.drain_time, then cuts its connections (1006): the
// sessions the replaced configuration admitted get 1001 DrainLead before
// that, and no other session does.
func TestReplacedConfigurationsSessionsGet1001BeforeTheDrainEnds(t *testing.T) {
	const drainTime = time.Second
	hs, logs := newHosts(t)
	sock := socketPath(t)
	old := document(t, sock)
	old.Session.DrainTime = config.Duration(drainTime)
	oldStats := newStats()
	h, err := hs.Acquire(old, oldStats)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Release(h, oldStats) })
	drained := session(t, sock, issueFor(t, h, old))
	untied := session(t, sock, issueFor(t, h, nil))

	replacedAt := time.Now()
	next := document(t, sock)
	next.Session.DrainTime = config.Duration(drainTime)
	nextStats := newStats()
	if _, err := hs.Acquire(next, nextStats); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hs.Release(h, nextStats) })
	kept := session(t, sock, issueFor(t, h, next))

	if ce := testkit.WaitClosed(t, drained); ce.Code != ws.StatusGoingAway || ce.Reason != "server shutting down" {
		t.Errorf("closed with %d %q, want 1001 \"server shutting down\"", ce.Code, ce.Reason)
	}
	if elapsed, want := time.Since(replacedAt), drainTime-DrainLead(drainTime); elapsed < want {
		t.Errorf("closed %v after the replacement, before drain_time - DrainLead = %v", elapsed, want)
	}
	// Sessions of the newer configuration, sessions tied to none, and a
	// session the replaced configuration admits after its close run on.
	late := session(t, sock, issueFor(t, h, old))
	for _, c := range []*client.Client{kept, untied, late} {
		testkit.Ping(t, c)
	}
	if !strings.Contains(logs.String(), "closing the sessions of a replaced configuration") {
		t.Errorf("the close is not logged: %s", logs)
	}
}

// Without session.drain_time nothing says that a newer configuration
// drains the older one (extension config discovery replaces a filter
// config without draining): the older one's sessions run on, and a
// configuration Envoy destroys before its drain close disarms it.
func TestReplacedConfigurationWithoutDrainTimeKeepsItsSessions(t *testing.T) {
	hs, _ := newHosts(t)
	sock := socketPath(t)
	h, _ := acquire(t, hs, sock)
	first := h.holders[0]
	c := session(t, sock, issueFor(t, h, first.doc))
	acquire(t, hs, sock)
	if first.replaced != nil {
		t.Fatal("a drain close was armed without session.drain_time")
	}

	withDrain := document(t, sock)
	withDrain.Session.DrainTime = config.Duration(time.Hour)
	stats := newStats()
	if _, err := hs.Acquire(withDrain, stats); err != nil {
		t.Fatal(err)
	}
	x := h.holders[len(h.holders)-1]
	acquire(t, hs, sock)
	if x.replaced == nil {
		t.Fatal("replacing a configuration with session.drain_time armed no drain close")
	}
	hs.Release(h, stats)
	if x.replaced.Stop() {
		t.Error("releasing the replaced configuration left its drain close armed")
	}
	testkit.Ping(t, c)
}
