package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/envoy-pubsub/gateway/config"
)

// saslMechanism builds the authenticator for s, whose password must be
// resolved already.
func saslMechanism(s *config.SASL) (sasl.Mechanism, error) {
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

// tlsState builds TLS client configurations from files and reloads a file
// when its modification time changes, so certificates rotate without a
// restart.
type tlsState struct {
	cfg  config.TLS
	mu   sync.Mutex
	ca   loaded[*x509.CertPool]
	cert loaded[*tls.Certificate]
}

// loaded is a value read from files and the modification times it was read at.
type loaded[T any] struct {
	mods  [2]time.Time
	value T
}

// newTLSState loads every file now, so that a bad file fails at config load.
func newTLSState(c *config.TLS) (*tlsState, error) {
	t := &tlsState{cfg: *c}
	if _, err := t.config(); err != nil {
		return nil, err
	}
	return t, nil
}

// config returns a TLS configuration with the current files' contents.
func (t *tlsState) config() (*tls.Config, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.cfg.ServerName,
		InsecureSkipVerify: !t.cfg.VerifyEnabled(),
	}
	if t.cfg.CAFile != "" {
		err := reload(&t.ca, [2]string{t.cfg.CAFile}, func() (*x509.CertPool, error) {
			pem, err := os.ReadFile(t.cfg.CAFile)
			if err != nil {
				return nil, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s: no PEM certificate found", t.cfg.CAFile)
			}
			return pool, nil
		})
		if err != nil {
			return nil, fmt.Errorf("kafka: tls.ca_file: %w", err)
		}
		tc.RootCAs = t.ca.value
	}
	if t.cfg.CertFile != "" {
		err := reload(&t.cert, [2]string{t.cfg.CertFile, t.cfg.KeyFile}, func() (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(t.cfg.CertFile, t.cfg.KeyFile)
			return &c, err
		})
		if err != nil {
			return nil, fmt.Errorf("kafka: tls.cert_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{*t.cert.value}
	}
	return tc, nil
}

// reload calls read when any of files changed since the last read.
func reload[T any](l *loaded[T], files [2]string, read func() (T, error)) error {
	var mods [2]time.Time
	for i, f := range files {
		if f == "" {
			continue
		}
		st, err := os.Stat(f)
		if err != nil {
			return err
		}
		mods[i] = st.ModTime()
	}
	if !l.mods[0].IsZero() && mods == l.mods {
		return nil
	}
	v, err := read()
	if err != nil {
		return err
	}
	l.mods, l.value = mods, v
	return nil
}

// dial returns a franz-go dialer that opens TLS connections with the
// current configuration.
func (t *tlsState) dial(timeout time.Duration) func(ctx context.Context, network, host string) (net.Conn, error) {
	return func(ctx context.Context, network, host string) (net.Conn, error) {
		tc, err := t.config()
		if err != nil {
			return nil, err
		}
		if tc.ServerName == "" {
			if h, _, err := net.SplitHostPort(host); err == nil {
				tc.ServerName = h
			}
		}
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: tc}
		return d.DialContext(ctx, network, host)
	}
}
