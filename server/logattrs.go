package server

import (
	"context"
	"log/slog"
	"slices"
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
