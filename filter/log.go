package filter

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/envoy-pubsub/gateway/internal/ratelog"
)

// envoyLogger returns a slog.Logger that writes to Envoy's "golang" logger
// through the api package, so the session server and Kafka clients log where
// the rest of Envoy does (enable with --component-log-level golang:debug).
func envoyLogger() *slog.Logger {
	h := &envoyLogHandler{shared: &envoyLogBuffer{}}
	h.text = slog.NewTextHandler(&h.shared.buf, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == slog.LevelKey) {
				return slog.Attr{} // Envoy stamps both
			}
			return a
		},
	})
	// A warning that repeats is logged once per interval, with the count
	// held back.
	return slog.New(ratelog.New(h, ratelog.DefaultInterval))
}

// envoyLogBuffer is the formatting buffer shared by a handler and the
// handlers derived from it with WithAttrs/WithGroup.
type envoyLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// envoyLogHandler formats records as logfmt text and hands each to the
// Envoy log level it maps to.
type envoyLogHandler struct {
	shared *envoyLogBuffer
	text   slog.Handler
}

func envoyLevel(l slog.Level) api.LogType {
	switch {
	case l < slog.LevelInfo:
		return api.Debug
	case l < slog.LevelWarn:
		return api.Info
	case l < slog.LevelError:
		return api.Warn
	default:
		return api.Error
	}
}

func (h *envoyLogHandler) Enabled(_ context.Context, l slog.Level) bool {
	return envoyLevel(l) >= api.GetLogLevel()
}

func (h *envoyLogHandler) Handle(ctx context.Context, r slog.Record) error {
	h.shared.mu.Lock()
	h.shared.buf.Reset()
	err := h.text.Handle(ctx, r)
	line := strings.TrimSuffix(h.shared.buf.String(), "\n")
	h.shared.mu.Unlock()
	if err != nil {
		return err
	}
	switch envoyLevel(r.Level) {
	case api.Debug:
		api.LogDebug(line)
	case api.Info:
		api.LogInfo(line)
	case api.Warn:
		api.LogWarn(line)
	default:
		api.LogError(line)
	}
	return nil
}

func (h *envoyLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &envoyLogHandler{shared: h.shared, text: h.text.WithAttrs(attrs)}
}

func (h *envoyLogHandler) WithGroup(name string) slog.Handler {
	return &envoyLogHandler{shared: h.shared, text: h.text.WithGroup(name)}
}
