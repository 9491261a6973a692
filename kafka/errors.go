package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrTLSRequired is the cause when a plaintext client meets a TLS broker.
var ErrTLSRequired = errors.New("broker closed the connection: TLS required")

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
	var ke *kerr.Error
	switch {
	case errors.As(err, &ke):
		if ke == kerr.SaslAuthenticationFailed {
			return &causeError{ErrAuthentication.Error(), err}
		}
		return &causeError{ke.Message, err}
	case isTLSFailure(err):
		return &causeError{"tls: " + strings.TrimPrefix(err.Error(), "tls: "), err}
	}
	var eof *kgo.ErrFirstReadEOF
	if errors.As(err, &eof) {
		// franz-go tells the two cases apart only in its text: the broker
		// hung up during SASL (bad credentials) or before TLS (plaintext
		// client on a TLS listener).
		switch {
		case k.cfg.SASL != nil && strings.Contains(eof.Error(), "SASL"):
			return &causeError{ErrAuthentication.Error(), err}
		case k.cfg.TLS == nil || !k.cfg.TLS.Enabled:
			return &causeError{ErrTLSRequired.Error(), err}
		}
		return &causeError{ErrBrokerUnreachable.Error() + ": connection closed by broker", err}
	}
	var op *net.OpError
	if errors.As(err, &op) || errors.Is(err, net.ErrClosed) {
		return &causeError{ErrBrokerUnreachable.Error(), err}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		if ctx.Err() != nil {
			return &causeError{ErrTimeout.Error(), err}
		}
		return &causeError{ErrBrokerUnreachable.Error(), err}
	}
	if errors.Is(err, context.Canceled) {
		return &causeError{"canceled", err}
	}
	return err
}

// isTLSFailure reports whether err is a certificate verification or TLS
// handshake failure.
func isTLSFailure(err error) bool {
	var (
		verr *tls.CertificateVerificationError
		uerr x509.UnknownAuthorityError
		herr x509.HostnameError
		ierr x509.CertificateInvalidError
		rerr tls.RecordHeaderError
		aerr tls.AlertError
	)
	return errors.As(err, &verr) || errors.As(err, &uerr) || errors.As(err, &herr) ||
		errors.As(err, &ierr) || errors.As(err, &rerr) || errors.As(err, &aerr)
}
