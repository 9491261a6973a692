package server

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// withAttrs returns log adding attrs to each record it writes. Unlike
// log.With, which formats the attributes into a copy of the handler for
// every logger, it holds only a reference to them: a session keeps its
// logger for its whole life and seldom logs.
func withAttrs(log *slog.Logger, attrs []slog.Attr) *slog.Logger {
	if len(attrs) == 0 {
		return log
	}
	return slog.New(&attrsHandler{Handler: log.Handler(), attrs: attrs})
}

// attrsHandler adds attrs to the records it passes to Handler.
type attrsHandler struct {
	slog.Handler
	attrs []slog.Attr
}

// Handle adds the attributes to a copy of r and handles it.
func (h *attrsHandler) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the attributes ahead of as.
func (h *attrsHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrsHandler{Handler: h.Handler, attrs: append(slices.Clip(h.attrs), as...)}
}

// WithGroup puts the group after the attributes.
func (h *attrsHandler) WithGroup(name string) slog.Handler {
	return h.Handler.WithAttrs(h.attrs).WithGroup(name)
}

// maxRouteLoggers bounds the loggers a server keeps for its routes'
// attributes; beyond it, a session gets a logger of its own.
const maxRouteLoggers = 64

// routeLoggers are a server's loggers by the attributes of its routes:
// made once and shared by the sessions of a route (a cluster), which
// would otherwise hold a logger and attributes each.
type routeLoggers struct {
	mu    sync.Mutex
	byKey map[string]*slog.Logger
}

// get returns base adding attrs to each record, a shared one when attrs
// are plain values (no group, no value logged through its own method).
func (c *routeLoggers) get(base *slog.Logger, attrs []slog.Attr) *slog.Logger {
	if len(attrs) == 0 {
		return base
	}
	key, ok := attrsKey(attrs)
	if !ok {
		return withAttrs(base, attrs)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if log := c.byKey[key]; log != nil {
		return log
	}
	log := withAttrs(base, slices.Clone(attrs))
	if len(c.byKey) < maxRouteLoggers {
		if c.byKey == nil {
			c.byKey = make(map[string]*slog.Logger)
		}
		c.byKey[key] = log
	}
	return log
}

// attrsKey returns a text that tells attrs apart by their keys, kinds and
// values; false when a value is a group or may log as something else than
// its text (an Any or a LogValuer).
func attrsKey(attrs []slog.Attr) (string, bool) {
	var b strings.Builder
	for _, a := range attrs {
		switch a.Value.Kind() {
		case slog.KindAny, slog.KindGroup, slog.KindLogValuer:
			return "", false
		}
		fmt.Fprintf(&b, "%q %d %q\n", a.Key, a.Value.Kind(), a.Value.String())
	}
	return b.String(), true
}
