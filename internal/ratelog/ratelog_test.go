package ratelog

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// logAt logs msg at level with the record time at.
func logAt(h slog.Handler, level slog.Level, at time.Time, msg string) {
	h.Handle(context.Background(), slog.NewRecord(at, level, msg, 0))
}

func TestRepeatedWarningsPassOncePerIntervalWithTheCountHeldBack(t *testing.T) {
	var out bytes.Buffer
	h := New(slog.NewTextHandler(&out, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}), time.Second)
	derived := h.WithAttrs([]slog.Attr{slog.String("cluster", "kafka")})
	t0 := time.Unix(1000, 0)
	logAt(h, slog.LevelWarn, t0, "broker down")
	logAt(derived, slog.LevelWarn, t0.Add(100*time.Millisecond), "broker down") // held: same message
	logAt(h, slog.LevelWarn, t0.Add(200*time.Millisecond), "broker down")       // held
	logAt(h, slog.LevelError, t0.Add(300*time.Millisecond), "broker down")      // another level passes
	logAt(h, slog.LevelWarn, t0.Add(400*time.Millisecond), "other")             // another message passes
	r := slog.NewRecord(t0.Add(450*time.Millisecond), slog.LevelWarn, "broker down", 0)
	r.AddAttrs(slog.String("broker", "b-2"))
	h.Handle(context.Background(), r)                              // other attributes pass
	logAt(h, slog.LevelInfo, t0.Add(500*time.Millisecond), "info") // info is never limited
	logAt(h, slog.LevelInfo, t0.Add(600*time.Millisecond), "info")
	logAt(h, slog.LevelWarn, t0.Add(1100*time.Millisecond), "broker down") // the interval passed
	want := []string{
		`level=WARN msg="broker down"`,
		`level=ERROR msg="broker down"`,
		`level=WARN msg=other`,
		`level=WARN msg="broker down" broker=b-2`,
		`level=INFO msg=info`,
		`level=INFO msg=info`,
		`level=WARN msg="broker down" suppressed=2`,
	}
	if got := strings.Split(strings.TrimSpace(out.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("logged:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestPerClientWarningsPassOncePerInterval: a warning logged for each client,
// with its address and its error, passes once per interval however many
// clients there are, tells the count held back, and is remembered as one key.
func TestPerClientWarningsPassOncePerInterval(t *testing.T) {
	var out bytes.Buffer
	h := New(slog.NewTextHandler(&out, nil), time.Second)
	t0 := time.Unix(1000, 0)
	for i := range 1000 {
		r := slog.NewRecord(t0.Add(time.Duration(i)*time.Millisecond/2), slog.LevelWarn, "upgrade refused", 0)
		r.AddAttrs(slog.String("remote", fmt.Sprintf("127.0.0.%d:%d", i%250, 40000+i)), slog.Any("err", fmt.Errorf("cause %d", i)))
		h.Handle(context.Background(), r)
	}
	logAt(h, slog.LevelWarn, t0.Add(1500*time.Millisecond), "upgrade refused")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "remote=127.0.0.0:40000") || !strings.HasSuffix(lines[1], "suppressed=999") {
		t.Fatalf("logged:\n%s\nwant the first client's warning, then one telling 999 held back", out.String())
	}
	if n := len(h.limit.seen); n != 1 {
		t.Errorf("%d keys remembered, want 1", n)
	}
}

// TestKeysRemainBounded: keys whose warning passed an interval ago and held
// nothing back are forgotten; a key that holds records back is kept until
// it tells their count; and however many messages come within an interval,
// the memory stays bounded.
func TestKeysRemainBounded(t *testing.T) {
	var out bytes.Buffer
	h := New(slog.NewTextHandler(&out, nil), time.Second)
	t0 := time.Unix(1000, 0)
	logAt(h, slog.LevelWarn, t0, "held")
	logAt(h, slog.LevelWarn, t0.Add(time.Millisecond), "held") // held back: its key must stay
	for i := range 10 * maxKeys {
		logAt(h, slog.LevelWarn, t0.Add(time.Duration(i)*100*time.Millisecond), fmt.Sprintf("message %d", i))
	}
	// Ten messages per interval: the ones older than an interval are swept.
	if n := len(h.limit.seen); n > 25 {
		t.Errorf("%d keys remembered of messages each logged once, one per 100ms, want at most ~2 intervals' worth", n)
	}
	out.Reset()
	logAt(h, slog.LevelWarn, t0.Add(time.Hour), "held")
	if !strings.Contains(out.String(), "suppressed=1") {
		t.Errorf("the held-back warning's count was lost: %q", out.String())
	}

	at := t0.Add(2 * time.Hour)
	for i := range 3 * maxKeys { // all within one interval
		logAt(h, slog.LevelWarn, at, fmt.Sprintf("burst %d", i))
	}
	if n := len(h.limit.seen); n > maxKeys {
		t.Errorf("%d keys remembered, want at most %d", n, maxKeys)
	}
}

// TestEachRefusalReasonPasses: warnings of one message with different
// reasons (a fixed set: why an upgrade was refused) pass each, so an
// operator sees every kind of refusal, while the clients' addresses still
// do not tell them apart.
func TestEachRefusalReasonPasses(t *testing.T) {
	var out bytes.Buffer
	h := New(slog.NewTextHandler(&out, nil), time.Second)
	t0 := time.Unix(1000, 0)
	for i, reason := range []string{"unknown ticket", "no ticket", "unknown ticket", "ticket expired"} {
		r := slog.NewRecord(t0.Add(time.Duration(i)*time.Millisecond), slog.LevelWarn, "upgrade refused", 0)
		r.AddAttrs(slog.String("reason", reason), slog.String("remote", fmt.Sprintf("127.0.0.1:%d", 40000+i)))
		h.Handle(context.Background(), r)
	}
	got := out.String()
	for _, reason := range []string{`reason="unknown ticket"`, `reason="no ticket"`, `reason="ticket expired"`} {
		if strings.Count(got, reason) != 1 {
			t.Errorf("%s logged %d times, want once:\n%s", reason, strings.Count(got, reason), got)
		}
	}
}
