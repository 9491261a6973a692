// Package metrics is the seam between the gateway's layers and whatever
// records their events: the session engine (pubsub/), the session server
// (server/) and the Kafka handlers (kafka/) report through the small
// interfaces here, so that none of them imports Prometheus or Envoy. The
// Prometheus implementation is in metrics/prom; Nop records nothing.
//
// Every method of every interface may be called from many goroutines at
// once and must not block: some are called for each frame or push.
package metrics

import "time"

// Engine receives the events of the session engine (pubsub/).
type Engine interface {
	// BytesRead reports n bytes read from a client's connection.
	BytesRead(n int)
	// BytesWritten reports n bytes written to a client's connection.
	BytesWritten(n int)
	// Pushed reports pushed replies (streaming commands) written to a
	// client.
	Pushed(n int)
	// BudgetWaited reports a reply reservation that waited for its
	// session's pending reply bytes (session.max_pending_bytes) to drain.
	BudgetWaited()
}

// Server receives the events of the session server (server/).
type Server interface {
	// SessionOpened reports an upgrade that started a session.
	SessionOpened()
	// SessionClosed reports a session's end with its WebSocket close code
	// (1006 when the connection ended without a close frame).
	SessionClosed(code int)
	// Refused reports an upgrade refused with an HTTP status, for a reason
	// from a small fixed set (it is a metric label), e.g. "ticket",
	// "not_upgrade", "too_many_sessions".
	Refused(status int, reason string)
	// Command reports a finished command of the protocol (e.g.
	// "cmd_kafka_fetch") and its error, nil on success.
	Command(command string, err error)
}

// Kafka receives the events of the Kafka handlers (kafka/).
type Kafka interface {
	// CacheLookup reports a read of the record cache that found the
	// offset asked for (hit) or not.
	CacheLookup(hit bool)
	// Delivered reports records sent to a client, in a fetch reply or a
	// subscription push.
	Delivered(records int)
	// ConsumerLag reports, after a push of a subscribed partition, the
	// records between the last one sent and the partition's high
	// watermark.
	ConsumerLag(records int64)
	// ProduceAck reports the time from a produce command to Kafka's
	// acknowledgement of its records.
	ProduceAck(d time.Duration)
	// FetchReply reports the time from a fetch command to its reply.
	FetchReply(d time.Duration)
}

// Sink receives every event of the gateway.
type Sink interface {
	Engine
	Server
	Kafka
}

// Nop records nothing; it is the default wherever a Sink or one of its
// parts is optional.
type Nop struct{}

var _ Sink = Nop{}

func (Nop) BytesRead(int)            {}
func (Nop) BytesWritten(int)         {}
func (Nop) Pushed(int)               {}
func (Nop) BudgetWaited()            {}
func (Nop) SessionOpened()           {}
func (Nop) SessionClosed(int)        {}
func (Nop) Refused(int, string)      {}
func (Nop) Command(string, error)    {}
func (Nop) CacheLookup(bool)         {}
func (Nop) Delivered(int)            {}
func (Nop) ConsumerLag(int64)        {}
func (Nop) ProduceAck(time.Duration) {}
func (Nop) FetchReply(time.Duration) {}
