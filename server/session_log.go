package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/envoy-pubsub/gateway/metrics"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// sessionStart is what the session log line keeps of the upgrade.
type sessionStart struct {
	remote string
	path   string
	at     time.Time
}

// SessionEndMessage is the message of the line logged when a session ends.
const SessionEndMessage = "session ended"

// logSessionEnd logs the one line of a session's end: its route and
// subject, what it read and was sent, how long it lasted and how it closed
// (the route's attributes, such as the cluster, come with log).
func logSessionEnd(log *slog.Logger, subject string, start sessionStart, end pubsub.End, tally *metrics.Tally) {
	partitions, more := tally.Partitions()
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs, slog.String("route", start.path))
	if subject != "" {
		attrs = append(attrs, slog.String("subject", subject))
	}
	attrs = append(attrs,
		slog.String("remote", start.remote),
		slog.Any("partitions", partitions),
	)
	if more > 0 {
		attrs = append(attrs, slog.Int("partitions_more", more))
	}
	attrs = append(attrs,
		slog.Int64("records_sent", tally.Records()),
		slog.Int64("bytes_sent", end.BytesWritten),
		slog.Int64("bytes_received", end.BytesRead),
		slog.Duration("duration", time.Since(start.at)),
		slog.Int("close_code", end.Code),
		slog.String("close_reason", end.Reason),
	)
	if end.Err != nil {
		attrs = append(attrs, slog.String("err", end.Err.Error()))
	}
	log.LogAttrs(context.Background(), slog.LevelInfo, SessionEndMessage, attrs...)
}

// reason returns the refusal's metric label.
func (e *Error) reason() string {
	if e.Reason != "" {
		return e.Reason
	}
	return strings.ReplaceAll(strings.ToLower(http.StatusText(e.Status)), " ", "_")
}

// commandReporter returns the session's command hook: next (if any), then
// the observer (if any) and the metrics.
func commandReporter(next func(string, error), o Observer, m metrics.Server) func(string, error) {
	return func(command string, err error) {
		if next != nil {
			next(command, err)
		}
		if o != nil {
			o.Command(command, err)
		}
		m.Command(command, err)
	}
}
