package server

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestWithAttrsAddsTheAttributesToEveryRecord(t *testing.T) {
	var out bytes.Buffer
	base := slog.New(slog.NewTextHandler(&out, nil))
	log := withAttrs(base, []slog.Attr{slog.String("cluster", "east")})
	log.Info("one", "remote", "r1")
	log.With("user", "u").WithGroup("g").Info("two", "k", "v")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log %q, want two lines", out.String())
	}
	for _, want := range []string{"msg=one", "remote=r1", "cluster=east"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line %q lacks %s", lines[0], want)
		}
	}
	for _, want := range []string{"msg=two", "cluster=east", "user=u", "g.k=v"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("line %q lacks %s", lines[1], want)
		}
	}
}

// TestSessionsOfARouteShareItsLogger: the sessions of routes with the same
// attributes get one logger, made once; other attributes get another, and
// attributes that are not plain values are not cached.
func TestSessionsOfARouteShareItsLogger(t *testing.T) {
	var out bytes.Buffer
	base := slog.New(slog.NewTextHandler(&out, nil))
	var c routeLoggers
	east := c.get(base, []slog.Attr{slog.String("cluster", "east")})
	if again := c.get(base, []slog.Attr{slog.String("cluster", "east")}); again != east {
		t.Fatal("a second session of cluster east got a logger of its own")
	}
	if c.get(base, nil) != base {
		t.Fatal("a route without attributes did not get the server's logger")
	}
	west := c.get(base, []slog.Attr{slog.String("cluster", "west")})
	number := c.get(base, []slog.Attr{slog.Int("cluster", 1)})
	text := c.get(base, []slog.Attr{slog.String("cluster", "1")})
	if west == east || number == text {
		t.Fatal("routes of other attributes share a logger")
	}
	anyValue := []slog.Attr{slog.Any("cluster", struct{ name string }{"east"})}
	if first := c.get(base, anyValue); c.get(base, anyValue) == first {
		t.Fatal("a logger of an Any value was cached")
	}
	east.Info("one")
	west.Info("two")
	if got := out.String(); !strings.Contains(got, "msg=one cluster=east") || !strings.Contains(got, "msg=two cluster=west") {
		t.Fatalf("log %q lacks a route's attributes", got)
	}
	for i := range 2 * maxRouteLoggers {
		c.get(base, []slog.Attr{slog.Int("session", i)})
	}
	if n := len(c.byKey); n != maxRouteLoggers {
		t.Fatalf("%d loggers kept, want at most %d", n, maxRouteLoggers)
	}
}
