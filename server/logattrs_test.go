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
