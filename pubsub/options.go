package pubsub

import (
	"log/slog"
	"time"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/metrics"
)

// Options are the limits and hooks of a session. The zero value of a field
// means its default.
type Options struct {
	// MaxFrameBytes bounds one WebSocket message, fragments included; a
	// larger one closes the session with 1009. Default 1 MiB.
	MaxFrameBytes int
	// IdleTimeout closes a session whose client sent no frame for this long
	// while it had no live stream (Request.Hold).
	// Default 60s; negative disables it.
	IdleTimeout time.Duration
	// WriteTimeout closes a session whose client does not take a reply for
	// this long. Default 30s; negative disables it.
	WriteTimeout time.Duration
	// MaxInFlight bounds the requests a session runs at once; while it is
	// reached the session reads no further requests. Default 16.
	MaxInFlight int
	// PushQueueBytes bounds the pushed replies of streaming commands that
	// wait to be written; a full queue pauses the session's pushes.
	// Default 1 MiB.
	PushQueueBytes int
	// PushStallTimeout closes a session with CloseSlowConsumer when its
	// pushes stay paused this long. Default 10s.
	PushStallTimeout time.Duration
	// MaxPendingBytes bounds the reply bytes a session holds: reserved for
	// replies being built (Request.Reserve), encoded or queued but not
	// written. Reservations wait while it is reached, and the session reads
	// no more requests until its replies drain. A session holding nothing
	// may reserve more, so that one large record still goes through.
	// Default 4 MiB.
	MaxPendingBytes int
	// Memory, if set, bounds the reply bytes of all the sessions that share
	// it, on top of each session's MaxPendingBytes.
	Memory *MemoryBudget
	// PingInterval is how often the server sends the client a WebSocket
	// ping, so that proxies see traffic and a dead peer is found.
	// Default 30s; negative disables pings.
	PingInterval time.Duration
	// PongTimeout closes a session (1001 "ping timeout") whose client has
	// not answered a ping this long after it was written. Default 15s.
	PongTimeout time.Duration
	// Logger receives session events; default slog.Default().
	Logger *slog.Logger
	// Deadline, if set, ends the session when it passes (see Deadline); it
	// belongs to this one session. Default none.
	Deadline *Deadline
	// OnCommand, if set, is called after each command with its name and the
	// handler's error (nil on success), for metrics.
	OnCommand func(command string, err error)
	// Metrics receives the session's traffic; default metrics.Nop.
	Metrics metrics.Engine
	// OnEnd, if set, is called once when the session has ended, with how it
	// ended, for the session's log line and metrics.
	OnEnd func(End)

	// parkAfter is how long a reader waits for the client before it parks
	// (tests shorten it); default defaultParkAfter.
	parkAfter time.Duration
}

// withDefaults fills in the zero fields with config's defaults, the one
// place the gateway's defaults are defined.
func (o Options) withDefaults() Options {
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = config.DefaultMaxFrameBytes
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = config.DefaultIdleTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = config.DefaultWriteTimeout
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = config.DefaultMaxInFlight
	}
	if o.PushQueueBytes <= 0 {
		o.PushQueueBytes = config.DefaultPushQueueBytes
	}
	if o.PushStallTimeout <= 0 {
		o.PushStallTimeout = config.DefaultPushStallTimeout
	}
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = config.DefaultMaxPendingBytes
	}
	if o.PingInterval == 0 {
		o.PingInterval = config.DefaultPingInterval
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = config.DefaultPongTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.Nop{}
	}
	if o.parkAfter <= 0 {
		o.parkAfter = defaultParkAfter
	}
	return o
}
