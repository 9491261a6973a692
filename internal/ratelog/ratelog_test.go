package ratelog

import (
	"bytes"
	"context"
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
