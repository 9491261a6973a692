// Package ratelog limits repeated warnings: a slog.Handler that passes a
// warning or error at most once per interval for each message with the same
// attributes, and tells in the next one passed how many it held back. A
// broker that stays down then costs one log line per interval, not one per
// retry, while warnings that differ (another client, another cause) pass.
package ratelog

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// DefaultInterval is the interval New uses for a non-positive one.
const DefaultInterval = 10 * time.Second

// maxMessages bounds the messages remembered; beyond it the memory starts
// over (messages are constant strings, so this is never reached in
// practice).
const maxMessages = 4096

// SuppressedKey is the attribute that counts the records held back since
// the last one of the same message.
const SuppressedKey = "suppressed"

// Handler passes records below slog.LevelWarn through, and records at or
// above it at most once per interval per level, message and attributes
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
	held, pass := h.limit.admit(key{r.Level, r.Message, attrsOf(r)}, at)
	if !pass {
		return nil
	}
	if held > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int(SuppressedKey, held))
	}
	return h.next.Handle(ctx, r)
}

// attrsOf renders the record's attributes, as the part of its key.
func attrsOf(r slog.Record) string {
	var b strings.Builder
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(a.String())
		b.WriteByte(0)
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
		if len(l.seen) >= maxMessages {
			clear(l.seen)
		}
		e = &entry{}
		l.seen[k] = e
	}
	held = e.suppressed
	e.last, e.suppressed = at, 0
	return held, true
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{next: h.next.WithAttrs(attrs), limit: h.limit}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{next: h.next.WithGroup(name), limit: h.limit}
}
