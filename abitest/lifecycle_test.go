package abitest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/envoy-pubsub/gateway/internal/testkit"
)

// upgradeHeaders are the request headers of a WebSocket upgrade as the host
// hands them to the library.
var upgradeHeaders = []string{":method=GET", ":path=/kafka", ":authority=gateway", "connection=Upgrade", "upgrade=websocket", "sec-websocket-version=13"}

// startLibrary runs a host with one filter-level config whose listener is a
// fresh socket; extra keys are added to the document.
func startLibrary(tb testing.TB, extra map[string]any) (e *fakeEnvoy, configID uint64, sock string) {
	tb.Helper()
	so, host := built(tb)
	sock = shortSocketPath(tb)
	doc := map[string]any{
		"listener":       sock,
		"kafka_clusters": map[string]any{"kafka": map[string]any{"brokers": []any{"127.0.0.1:1"}}},
	}
	for k, v := range extra {
		doc[k] = v
	}
	e = startHost(tb, host, so)
	e.expect(tb, "LOADED")
	cfg := writeConfig(tb, tb.TempDir(), "filter.pb", doc)
	if configID = e.config(tb, "filter", cfg); configID == 0 {
		tb.Fatalf("config rejected; log:\n%s", e.log())
	}
	return e, configID, sock
}

// TestDestroyedStreamGivesItsTicketBack drives, through the real library,
// upgrades whose streams end without reaching the session server (what the
// router's 503 on circuit-breaker overflow, a failed connect or a client
// reset look like to the filter: onDestroy after decodeHeaders). Their
// tickets are revoked at once, so the bounded store refuses only while such
// streams are open, and a revoked ticket cannot start a session. A keyless
// upgrade (HTTP/2 WebSocket, as Envoy forwards it) with a live ticket does.
func TestDestroyedStreamGivesItsTicketBack(t *testing.T) {
	e, id, sock := startLibrary(t, map[string]any{"tickets": map[string]any{"max_outstanding": 2}})

	var open []decoded
	for i := range 2 {
		r := e.request(t, id, "kafka", i%2, upgradeHeaders...)
		if r.status != statusContinue || len(r.headers["x-pubsub-ticket"]) != 1 {
			t.Fatalf("upgrade %d: %+v", i, r)
		}
		open = append(open, r)
	}
	full := e.requestEnded(t, id, "kafka", 0, upgradeHeaders...)
	if full.status != statusLocalReply || !strings.HasPrefix(full.reply, "503 pubsub_tickets_exhausted") {
		t.Fatalf("upgrade beyond tickets.max_outstanding with two open streams: %+v, want 503", full)
	}
	if got := e.stats(t)["pubsub.tickets_outstanding"]; got != 2 {
		t.Errorf("tickets_outstanding = %d with two unredeemed streams open, want 2", got)
	}

	for _, r := range open {
		e.end(t, r)
	}
	stats := e.stats(t)
	if stats["pubsub.tickets_outstanding"] != 0 || stats["pubsub.tickets_revoked"] != 2 {
		t.Errorf("after the streams ended: tickets_outstanding %d, tickets_revoked %d; want 0 and 2",
			stats["pubsub.tickets_outstanding"], stats["pubsub.tickets_revoked"])
	}
	_, err := dial(sock, open[0].headers["x-pubsub-ticket"][0])
	wantStatus(t, "revoked ticket", err, http.StatusUnauthorized)

	// The store has room again at once, not after the TTL.
	for i := range 2 {
		r := e.request(t, id, "kafka", 0, upgradeHeaders...)
		if r.status != statusContinue {
			t.Fatalf("upgrade %d after the streams ended: %+v", i, r)
		}
		open[i] = r
	}

	// An HTTP/2 WebSocket reaches the socket without Sec-WebSocket-Key.
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, br := testkit.RawUpgrade(t, conn, testkit.EnvoyH2UpgradeRequest("/kafka", "x-pubsub-ticket: "+open[0].headers["x-pubsub-ticket"][0]+"\r\n"))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("keyless upgrade with the library's ticket: %d; log:\n%s", resp.StatusCode, e.log())
	}
	testkit.RawPing(t, conn, br, "h2")
	e.end(t, open[0]) // redeemed: nothing to revoke
	e.end(t, open[1])
	if got := e.stats(t)["pubsub.tickets_revoked"]; got != 3 {
		t.Errorf("tickets_revoked = %d, want 3 (the redeemed ticket's stream revokes nothing)", got)
	}

	fin, violations := e.finish(t)
	if fin[0] != fin[1] || violations != 0 {
		t.Errorf("finalized %d of %d requests, %d ABI violations; log:\n%s", fin[0], fin[1], violations, e.log())
	}
}

// BenchmarkDataPath measures what the golang filter costs Envoy per request
// and per data chunk when Envoy calls it (decodeData/encodeData ->
// envoyGoFilterOnHttpData, and headers, access log and destroy for each
// request), through the real library and the C ABI. It runs each case
// alone and then while sessions ping the library's session server, and
// measures a ping round trip of such a session as the session's own work
// per frame. Envoy's C++ bookkeeping around the calls is not included.
func BenchmarkDataPath(b *testing.B) {
	e, id, sock := startLibrary(b, nil)
	web := fmt.Sprintf("bench %d web", id)
	kafka := fmt.Sprintf("bench %d kafka", id)
	upgrade := " " + strings.Join(upgradeHeaders, " ")
	plain := " :method=GET :path=/index.html :authority=gateway"

	run := func(b *testing.B, load int) {
		stop := sessionLoad(b, e, id, sock, load)
		defer stop()
		b.Run("web route/request", func(b *testing.B) {
			reqNs, _ := e.bench(b, fmt.Sprintf("%s %d 0%s", web, b.N, plain))
			b.ReportMetric(float64(reqNs)/float64(b.N), "ns/request")
		})
		b.Run("web route/chunk", func(b *testing.B) {
			_, chunkNs := e.bench(b, fmt.Sprintf("%s 1 %d%s", web, b.N, plain))
			b.ReportMetric(float64(chunkNs)/float64(2*b.N), "ns/chunk")
		})
		b.Run("session/chunk", func(b *testing.B) {
			_, chunkNs := e.bench(b, fmt.Sprintf("%s 1 %d%s", kafka, b.N, upgrade))
			b.ReportMetric(float64(chunkNs)/float64(2*b.N), "ns/chunk")
		})
		b.Run("session/ping round trip", func(b *testing.B) {
			c := loadSession(b, e, id, sock)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Ping(ctx, []byte("x")); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("idle", func(b *testing.B) { run(b, 0) })
	b.Run("32 pinging sessions", func(b *testing.B) { run(b, 32) })
}

// bench runs a host bench command and returns its request and chunk
// nanoseconds.
func (e *fakeEnvoy) bench(tb testing.TB, command string) (requestNs, chunkNs int64) {
	tb.Helper()
	e.send(tb, command)
	line := e.next(tb)
	if _, err := fmt.Sscanf(line, "BENCH %d %d", &requestNs, &chunkNs); err != nil {
		tb.Fatalf("host said %q, want BENCH", line)
	}
	return requestNs, chunkNs
}

// sessionLoad starts n sessions on the library's socket that ping as fast
// as they can until the returned stop is called.
func sessionLoad(tb testing.TB, e *fakeEnvoy, id uint64, sock string, n int) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, n)
	for range n {
		c := loadSession(tb, e, id, sock)
		go func() {
			defer func() { done <- struct{}{} }()
			for ctx.Err() == nil {
				if _, err := c.Ping(ctx, []byte("load")); err != nil {
					return
				}
			}
		}()
	}
	return func() {
		cancel()
		for range n {
			<-done
		}
	}
}

// loadSession opens a session with a ticket of the library, its stream
// left open as Envoy leaves an upgraded stream.
func loadSession(tb testing.TB, e *fakeEnvoy, id uint64, sock string) interface {
	Ping(context.Context, []byte) ([]byte, error)
} {
	tb.Helper()
	r := e.request(tb, id, "kafka", 1, upgradeHeaders...)
	if r.status != statusContinue {
		tb.Fatalf("upgrade: %+v", r)
	}
	c, err := dial(sock, r.headers["x-pubsub-ticket"][0])
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// TestReplacedConfigsSessionsGet1001BeforeEnvoysDrainEnds: a listener
// update makes Envoy parse the new filter config while the old one's
// listener drains for --drain-time-s, then cut its connections (1006). With
// session.drain_time set to that time, the library closes the old config's
// sessions with 1001 shortly before; the new config's sessions run on.
func TestReplacedConfigsSessionsGet1001BeforeEnvoysDrainEnds(t *testing.T) {
	const drainTime = time.Second
	session := map[string]any{"drain_time": drainTime.String()}
	e, oldID, sock := startLibrary(t, map[string]any{"session": session})
	oldStream := e.request(t, oldID, "kafka", 0, upgradeHeaders...)
	drained, err := dial(sock, oldStream.headers["x-pubsub-ticket"][0])
	if err != nil {
		t.Fatal(err)
	}
	defer drained.Close()
	testkit.Ping(t, drained)

	next := writeConfig(t, t.TempDir(), "next.pb", map[string]any{
		"listener":       sock,
		"kafka_clusters": map[string]any{"kafka": map[string]any{"brokers": []any{"127.0.0.1:1"}}},
		"session":        session,
	})
	replaced := time.Now()
	newID := e.config(t, "filter", next)
	if newID == 0 {
		t.Fatalf("config rejected; log:\n%s", e.log())
	}
	newStream := e.request(t, newID, "kafka", 1, upgradeHeaders...)
	kept, err := dial(sock, newStream.headers["x-pubsub-ticket"][0])
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()

	waitGoingAway(t, "the replaced config's session", drained)
	if elapsed, least := time.Since(replaced), drainTime-drainTime/10; elapsed < least {
		t.Errorf("the replaced config's session closed %v after the new config, before %v", elapsed, least)
	}
	testkit.Ping(t, kept)

	e.end(t, oldStream)
	e.end(t, newStream)
	fin, violations := e.finish(t)
	if fin[0] != fin[1] || violations != 0 {
		t.Errorf("finalized %d of %d requests, %d ABI violations; log:\n%s", fin[0], fin[1], violations, e.log())
	}
}
