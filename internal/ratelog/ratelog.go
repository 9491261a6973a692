// Package ratelog limits repeated warnings: a slog.Handler that passes a
// warning or error at most once per interval for each message, and tells in
// the next one passed how many it held back. A broker that stays down then
// costs one log line per interval, not one per retry, and a warning logged
// for each client (with its address, its error) costs one line per interval
// whatever the number of clients. Only the attributes that name a
// configured thing (a cluster, a broker, a jwks_uri) tell apart warnings of the
// same message.
package ratelog

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultInterval is the interval New uses for a non-positive one.
const DefaultInterval = 10 * time.Second

// maxKeys bounds the keys remembered. Keys whose last record passed an
// interval ago and held none back since are forgotten first; when the rest
// still fill the memory, it starts over (messages are constant strings and
// keyAttrs name configured things, so this is not reached in practice).
const maxKeys = 1024

// keyAttrs are the record attributes that, with the level and the message,
// key the limit: they name things of the configuration or a reason from a
// fixed set, so they take few values. Every other attribute (a client's address, an error, a stack)
// varies freely and is left out, so that it neither defeats the limit nor
// grows the memory.
var keyAttrs = []string{"cluster", "broker", "brokers", "jwks_uri", "reason"}

// SuppressedKey is the attribute that counts the records held back since
// the last one of the same message.
const SuppressedKey = "suppressed"

// Handler passes records below slog.LevelWarn through, and records at or
// above it at most once per interval per level, message and keyAttrs
// (those of the record, not those added with WithAttrs).
type Handler struct {
	next  slog.Handler
	limit *limiter
}

// limiter is shared by a Handler and those derived from it with WithAttrs
// and WithGroup, so that a message is limited however it was logged.
type limiter struct {
	interval time.Duration
	mu       sync.Mutex
	seen     map[key]*entry
	swept    time.Time // when seen was last swept of forgotten keys
}

type key struct {
	level   slog.Level
	message string
	attrs   string
}

type entry struct {
	last       time.Time
	suppressed int
}

// New wraps next, limiting each warning and error message to one record per
// interval (DefaultInterval when interval <= 0).
func New(next slog.Handler, interval time.Duration) *Handler {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Handler{next: next, limit: &limiter{interval: interval, seen: make(map[key]*entry)}}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	at := r.Time
	if at.IsZero() {
		at = time.Now()
	}
	held, pass := h.limit.admit(key{r.Level, r.Message, keyAttrsOf(r)}, at)
	if !pass {
		return nil
	}
	if held > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int(SuppressedKey, held))
	}
	return h.next.Handle(ctx, r)
}

// keyAttrsOf renders the record's keyAttrs, as the part of its key.
func keyAttrsOf(r slog.Record) string {
	var b strings.Builder
	r.Attrs(func(a slog.Attr) bool {
		if slices.Contains(keyAttrs, a.Key) {
			b.WriteString(a.String())
			b.WriteByte(0)
		}
		return true
	})
	return b.String()
}

// admit reports whether a record of k at time at passes, and how many were
// held back before it.
func (l *limiter) admit(k key, at time.Time) (held int, pass bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.seen[k]
	if e != nil && at.Sub(e.last) < l.interval {
		e.suppressed++
		return 0, false
	}
	if e == nil {
		l.sweepLocked(at)
		if len(l.seen) >= maxKeys {
			clear(l.seen)
		}
		e = &entry{}
		l.seen[k] = e
	}
	held = e.suppressed
	e.last, e.suppressed = at, 0
	return held, true
}

// sweepLocked forgets, at most once per interval, the keys whose last record
// passed an interval ago and held none back since: their next record passes
// anyway, with nothing to tell. Keys that hold records back stay, so their
// count is told. Callers hold mu.
func (l *limiter) sweepLocked(at time.Time) {
	if at.Sub(l.swept) < l.interval {
		return
	}
	l.swept = at
	for k, e := range l.seen {
		if e.suppressed == 0 && at.Sub(e.last) >= l.interval {
			delete(l.seen, k)
		}
	}
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(attrs), limit: h.limit}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), limit: h.limit}
}
