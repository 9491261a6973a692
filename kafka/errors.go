package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Causes of connection failures that franz-go reports only as a closed
// connection.
var (
	// ErrTLSRequired is the cause when a plaintext client meets a TLS broker.
	ErrTLSRequired = errors.New("broker closed the connection: TLS required")
	// ErrSASLRequired is the cause when the broker wants SASL and the
	// cluster has none configured.
	ErrSASLRequired = errors.New("authentication failed: broker requires SASL")
	// ErrClosedByBroker is the cause when an established connection was
	// closed by the broker and a retry did not succeed.
	ErrClosedByBroker = errors.New("broker unreachable: connection closed by broker")
)

// causeError names a failure briefly for clients while keeping the original
// error for errors.Is and errors.As.
type causeError struct {
	text string
	err  error
}

func (e *causeError) Error() string { return e.text }
func (e *causeError) Unwrap() error { return e.err }

// cause turns a franz-go or network error into the cause clients see:
// Kafka error names as Kafka spells them (by error code), or plain words.
func (k *Cluster) cause(ctx context.Context, err error) error {
	var (
		ke *kerr.Error
		te *TLSError
		op *net.OpError
	)
	switch {
	case errors.As(err, &ke):
		if ke == kerr.SaslAuthenticationFailed {
			return &causeError{ErrAuthentication.Error(), err}
		}
		return &causeError{ke.Message, err}
	case errors.As(err, &te):
		return &causeError{te.Error(), err}
	case errors.As(err, &op) && op.Op == "remote error":
		// A TLS alert after the handshake: with TLS 1.3 a broker checks
		// the client certificate only then.
		return &causeError{"tls: broker refused the connection: " + op.Err.Error(), err}
	case closedByBroker(err):
		return &causeError{k.setup.closedCause(k, err).Error(), err}
	case errors.As(err, &op) || errors.Is(err, net.ErrClosed):
		return &causeError{ErrBrokerUnreachable.Error(), err}
	case errors.Is(err, context.DeadlineExceeded):
		if ctx.Err() != nil {
			return &causeError{ErrTimeout.Error(), err}
		}
		return &causeError{ErrBrokerUnreachable.Error(), err}
	case errors.Is(err, context.Canceled):
		return &causeError{"canceled", err}
	}
	return err
}

// closedByBroker reports whether err means the broker closed or reset the
// connection.
func closedByBroker(err error) bool {
	var eof *kgo.ErrFirstReadEOF
	return errors.As(err, &eof) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET)
}

// setupWatch is a franz-go hook that remembers which step of connection
// set-up a broker last cut off. Kafka brokers (kfake among them) answer bad
// credentials by closing the connection, which franz-go reports as a bare
// EOF; the step the read failed in tells a wrong password from a plaintext
// client on a TLS port. A successful connection clears it.
type setupWatch struct {
	failedKey atomic.Int32 // kmsg key of the failed set-up read plus one; 0 for none
}

var (
	_ kgo.HookBrokerRead    = (*setupWatch)(nil)
	_ kgo.HookBrokerConnect = (*setupWatch)(nil)
)

// OnBrokerRead records a failed read of a set-up response.
func (w *setupWatch) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err == nil {
		return
	}
	switch kmsg.Key(key) {
	case kmsg.ApiVersions, kmsg.SASLHandshake, kmsg.SASLAuthenticate:
		w.failedKey.Store(int32(key) + 1)
	}
}

// OnBrokerConnect clears the record once a connection is fully set up.
func (w *setupWatch) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err == nil {
		w.failedKey.Store(0)
	}
}

// closedCause names why the broker closed a connection of k.
func (w *setupWatch) closedCause(k *Cluster, err error) error {
	tlsOn := k.cfg.TLS != nil && k.cfg.TLS.Enabled
	switch kmsg.Key(w.failedKey.Load() - 1) {
	case kmsg.SASLHandshake, kmsg.SASLAuthenticate:
		return ErrAuthentication
	case kmsg.ApiVersions:
		if !tlsOn {
			return ErrTLSRequired
		}
	}
	var eof *kgo.ErrFirstReadEOF
	if errors.As(err, &eof) && k.cfg.SASL == nil {
		// The connection was set up, and the broker closed it at the
		// first real request: it wants authentication.
		return ErrSASLRequired
	}
	return ErrClosedByBroker
}

// Causes of command failures that are not Kafka error codes.
var (
	ErrTopicNotAllowed   = errors.New("topic not allowed")
	ErrTopicNotFound     = errors.New("not found topic")
	ErrPartitionNotFound = errors.New("not found partition")
	ErrBrokerUnreachable = errors.New("broker unreachable")
	ErrAuthentication    = errors.New("authentication failed")
	ErrTimeout           = errors.New("request timed out")
)

// CommandError is a failed Kafka command. Its text is in APISIX's format,
// "failed to fetch message, topic: T, partition: P, err: CAUSE", so that
// clients written for APISIX read it unchanged.
type CommandError struct {
	Op        string // e.g. "list offset", "fetch message", "produce message"
	Topic     string
	Partition int32
	Cause     error
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("failed to %s, topic: %s, partition: %d, err: %s", e.Op, e.Topic, e.Partition, e.Cause)
}

// Unwrap returns the cause.
func (e *CommandError) Unwrap() error { return e.Cause }
