package sessionhost

import (
	"context"
	"log/slog"
	"os"
	"sync"
)

// logGate sends a logger's records to its live handler while open and to
// its closed handler after close. A host's log is open while a
// configuration holds the host: inside Envoy the live handler calls into
// Envoy, which nothing may do for a configuration Envoy has destroyed, so
// the drain and the sessions that outlive it log to the process's stderr
// (where Envoy's own log goes by default) instead.
type logGate struct {
	mu   sync.RWMutex
	open bool
}

func (g *logGate) set(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = open
}

// gatedHandler is a slog.Handler behind a logGate.
type gatedHandler struct {
	gate         *logGate
	live, closed slog.Handler
}

// detachedHandler is where a host logs once released: warnings and errors
// only, to stderr, without calling into Envoy.
func detachedHandler() slog.Handler {
	return slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})
}

func (h *gatedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	h.gate.mu.RLock()
	defer h.gate.mu.RUnlock()
	if h.gate.open {
		return h.live.Enabled(ctx, l)
	}
	return h.closed.Enabled(ctx, l)
}

// Handle holds the gate's read lock while the live handler runs, so that
// no record reaches it once set(false) has returned.
func (h *gatedHandler) Handle(ctx context.Context, r slog.Record) error {
	h.gate.mu.RLock()
	defer h.gate.mu.RUnlock()
	if h.gate.open {
		return h.live.Handle(ctx, r)
	}
	return h.closed.Handle(ctx, r)
}

func (h *gatedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &gatedHandler{gate: h.gate, live: h.live.WithAttrs(attrs), closed: h.closed.WithAttrs(attrs)}
}

func (h *gatedHandler) WithGroup(name string) slog.Handler {
	return &gatedHandler{gate: h.gate, live: h.live.WithGroup(name), closed: h.closed.WithGroup(name)}
}
