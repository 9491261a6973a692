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

// Is matches the cause named by target's text too (ErrBatchTooLarge, say),
// besides the original error Unwrap gives.
func (e *causeError) Is(target error) bool { return target != nil && e.text == target.Error() }

// cause turns a franz-go or network error into the cause clients see:
// Kafka error names as Kafka spells them (by error code), or plain words
// (see PROTOCOL.md). Errors that are causes already pass unchanged.
func (k *Cluster) cause(ctx context.Context, err error) error {
	if text, ok := k.classify(ctx, err); ok {
		return &causeError{text, err}
	}
	return err
}

// fetchCause is cause for the errors of decoding and consuming record
// batches: franz-go reports a batch it cannot parse (a CRC mismatch, a
// truncated batch) with an untyped error, named CORRUPT_MESSAGE here.
func (k *Cluster) fetchCause(ctx context.Context, err error) error {
	if text, ok := k.classify(ctx, err); ok {
		return &causeError{text, err}
	}
	return &causeError{kerr.CorruptMessage.Message, err}
}

// franz-go's client-side errors that it does not export, by their text.
var (
	kgoUnreachable = []string{
		"unknown broker", // a broker that left the cluster, or none is known
		"the broker connection has died and the request will be retried on a new connection",
		"correlation ID mismatch",
	}
	kgoUnsupported = []string{
		"broker is too old; the broker has already indicated it will not know how to handle the request",
		"request key is unknown",
	}
	kgoTooLarge = []string{
		"response exceeds BrokerMaxReadBytes",
	}
)

// classify names the cause of err, reporting false when err is not an error
// it knows (a cause already, or an error of the gateway's own).
func (k *Cluster) classify(ctx context.Context, err error) (string, bool) {
	var (
		ke      *kerr.Error
		te      *TLSError
		op      *net.OpError
		ce      *causeError
		session *kgo.ErrGroupSession
	)
	switch {
	case err == nil:
		return "", false
	case errors.As(err, &ce):
		return ce.text, true
	case errors.As(err, &ke):
		if ke == kerr.SaslAuthenticationFailed {
			return ErrAuthentication.Error(), true
		}
		return ke.Message, true
	case errors.As(err, &session) && session.Err != nil && session.Err != err:
		return k.classify(ctx, session.Err)
	case errors.Is(err, kgo.ErrMaxDecompress) || textIn(err, kgoTooLarge):
		return ErrBatchTooLarge.Error(), true
	case errors.Is(err, kgo.ErrRecordTimeout) || errors.Is(err, kgo.ErrMaxBuffered):
		// A produce that did not finish in time; too many buffered
		// records wait as long.
		return ErrTimeout.Error(), true
	case errors.Is(err, kgo.ErrRecordRetries):
		return ErrBrokerUnreachable.Error(), true
	case errors.Is(err, kgo.ErrAborting) || errors.Is(err, kgo.ErrClientClosed):
		return ErrCanceled.Error(), true
	case isDataLoss(err):
		// The records at the reader's position are gone from the log.
		return kerr.OffsetOutOfRange.Message, true
	case errors.As(err, &te):
		return te.Error(), true
	case errors.As(err, &op) && op.Op == "remote error":
		// A TLS alert after the handshake: with TLS 1.3 a broker checks
		// the client certificate only then.
		return "tls: broker refused the connection: " + op.Err.Error(), true
	case closedByBroker(err):
		return k.setup.closedCause(k, err).Error(), true
	case errors.As(err, &op) || errors.Is(err, net.ErrClosed) || textIn(err, kgoUnreachable):
		return ErrBrokerUnreachable.Error(), true
	case textIn(err, kgoUnsupported):
		return kerr.UnsupportedVersion.Message, true
	case errors.Is(err, context.DeadlineExceeded):
		if ctx.Err() != nil {
			return ErrTimeout.Error(), true
		}
		return ErrBrokerUnreachable.Error(), true
	case errors.Is(err, context.Canceled):
		return ErrCanceled.Error(), true
	}
	return "", false
}

// isDataLoss reports whether err is franz-go's report that records were
// lost under a consumer.
func isDataLoss(err error) bool {
	_, ok := errors.AsType[*kgo.ErrDataLoss](err)
	return ok
}

// textIn reports whether err, or an error it wraps, reads as one of texts.
func textIn(err error, texts []string) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		for _, t := range texts {
			if e.Error() == t {
				return true
			}
		}
	}
	return false
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
	// ErrBatchTooLarge is the cause when a record batch would decompress
	// to more than the pool's MaxBatchBytes, or a broker answer exceeds
	// franz-go's read bound: it is refused, not decoded.
	ErrBatchTooLarge = errors.New("record batch too large")
	// ErrCanceled is the cause when the gateway gave up a command: its
	// session or client closed meanwhile.
	ErrCanceled = errors.New("canceled")
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
