package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/envoy-pubsub/gateway/config"
)

// TLSHandshakeTimeout bounds the TLS handshake with a broker (within the
// cluster's request_timeout). A broker that does not speak TLS on its port
// may never answer a ClientHello; this makes that failure prompt.
const TLSHandshakeTimeout = 2 * time.Second

// saslMechanism builds the authenticator for s, whose password must be
// resolved already.
func saslMechanism(s *config.SASL) (sasl.Mechanism, error) {
	switch s.Mechanism {
	case config.MechanismOAuthBearer:
		return oauthBearerMechanism(&s.SASLCloud)
	case config.MechanismAWSMSKIAM:
		return mskIAMMechanism()
	}
	if s.Password == "" {
		return nil, errors.New("kafka: sasl password is not resolved")
	}
	user, pass := s.Username, s.Password.Reveal()
	switch s.Mechanism {
	case config.MechanismPlain:
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case config.MechanismScramSHA256:
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case config.MechanismScramSHA512:
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("kafka: unsupported sasl mechanism %q", s.Mechanism)
}

// warnInsecure logs the settings of c that expose credentials or data.
func warnInsecure(log *slog.Logger, c *config.KafkaCluster) {
	tlsOn := c.TLS != nil && c.TLS.Enabled
	if !tlsOn && c.SASL != nil && c.SASL.Mechanism == config.MechanismPlain {
		log.Warn("kafka: SASL PLAIN without TLS sends the password in clear text", "brokers", c.Brokers)
	}
	if !tlsOn && c.SASL != nil && c.SASL.Mechanism == config.MechanismOAuthBearer {
		log.Warn("kafka: SASL OAUTHBEARER without TLS sends the token in clear text", "brokers", c.Brokers)
	}
	if tlsOn && !c.TLS.VerifyEnabled() {
		log.Warn("kafka: tls.verify is false: broker certificates are not checked", "brokers", c.Brokers)
	}
}

// tlsDialer opens TLS connections to brokers. It reads the CA and client
// certificate files again for every new connection, so rotated files take
// effect without a restart; if the files cannot be read or parsed (say, in
// the middle of a rotation) it keeps using the last good ones.
type tlsDialer struct {
	cfg     config.TLS
	timeout time.Duration
	log     *slog.Logger

	mu   sync.Mutex
	last *config.TLSFiles
}

// newTLSDialer loads the files once, so that a bad file fails now rather
// than at the first connection.
func newTLSDialer(c *config.TLS, timeout time.Duration, log *slog.Logger) (*tlsDialer, error) {
	d := &tlsDialer{cfg: *c, timeout: timeout, log: log}
	files, err := c.LoadFiles()
	if err != nil {
		return nil, fmt.Errorf("kafka: tls.%w", err)
	}
	d.last = files
	return d, nil
}

// files returns the current contents of the TLS files, or the last good
// ones when they cannot be loaded.
func (d *tlsDialer) files() *config.TLSFiles {
	files, err := d.cfg.LoadFiles()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.log.Warn("kafka: cannot reload tls files, keeping the previous ones", "err", "tls."+err.Error())
		return d.last
	}
	d.last = files
	return files
}

// config returns the client TLS configuration for a connection to host.
func (d *tlsDialer) config(host string) *tls.Config {
	files := d.files()
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         d.cfg.ServerName,
		InsecureSkipVerify: !d.cfg.VerifyEnabled(),
		RootCAs:            files.RootCAs,
	}
	if files.Certificate != nil {
		tc.Certificates = []tls.Certificate{*files.Certificate}
	}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	return tc
}

// DialContext is franz-go's dialer: a TCP connection, then a TLS handshake
// bounded by TLSHandshakeTimeout. A failed handshake is a *TLSError.
func (d *tlsDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	tc := d.config(host)
	raw, err := (&net.Dialer{Timeout: d.timeout}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, TLSHandshakeTimeout)
	defer cancel()
	conn := tls.Client(raw, tc)
	if err := conn.HandshakeContext(hctx); err != nil {
		raw.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		d.log.Warn("kafka: tls handshake with broker failed", "addr", addr, "err", err)
		return nil, newTLSError(err)
	}
	return conn, nil
}

// TLSError is a failed TLS handshake with a broker. Its text is the cause
// clients see; the handshake error itself, which may name hosts, goes to the
// log only. It deliberately wraps nothing: franz-go must not retry a
// handshake that failed for want of trust or of TLS on the broker's side.
type TLSError struct {
	cause string
}

// Error returns the cause, e.g. "tls: failed to verify broker certificate:
// x509: certificate signed by unknown authority".
func (e *TLSError) Error() string { return e.cause }

// newTLSError names why a handshake failed.
func newTLSError(err error) *TLSError {
	var (
		verr   *tls.CertificateVerificationError
		unauth x509.UnknownAuthorityError
		host   x509.HostnameError
		inval  x509.CertificateInvalidError
		rhdr   tls.RecordHeaderError
		op     *net.OpError
	)
	const verifyFailed = "tls: failed to verify broker certificate: "
	cause := "tls: handshake with broker failed"
	switch {
	case errors.As(err, &unauth):
		cause = verifyFailed + "x509: certificate signed by unknown authority"
	case errors.As(err, &host):
		cause = verifyFailed + "x509: certificate is not valid for the broker name"
	case errors.As(err, &inval) && inval.Reason == x509.Expired:
		cause = verifyFailed + "x509: certificate has expired or is not yet valid"
	case errors.As(err, &verr):
		cause = verifyFailed + "x509: certificate is not valid"
	case errors.As(err, &op) && op.Op == "remote error":
		cause = "tls: broker refused the handshake: " + op.Err.Error()
	case errors.As(err, &rhdr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		cause = "tls: broker did not answer the TLS handshake (is it a plaintext listener?)"
	}
	return &TLSError{cause: cause}
}
