package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/envoy-pubsub/gateway/client"
)

// dialOptions turns the connection flags into client options: the upgrade
// headers (-header, the bearer token) and, for wss://, the TLS
// configuration. -insecure prints a warning to stderr.
func dialOptions(o *options, stderr io.Writer) (client.Options, error) {
	opts := client.Options{PingInterval: o.pingInterval, Header: http.Header{}}
	if name, value, ok := strings.Cut(o.upgradeHeader, ":"); ok {
		opts.Header.Set(name, strings.TrimSpace(value))
	}
	token := o.token
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return opts, fmt.Errorf("-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); token == "" {
			return opts, fmt.Errorf("-token-file: %s holds no token", o.tokenFile)
		}
	}
	if token != "" {
		opts.Header.Set("Authorization", "Bearer "+token)
	}
	if !strings.HasPrefix(o.url, "wss://") {
		return opts, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return opts, fmt.Errorf("-cafile: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return opts, fmt.Errorf("-cafile: %s holds no PEM certificate", o.caFile)
		}
	}
	if o.certFile != "" {
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return opts, fmt.Errorf("-cert/-key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if o.insecure {
		fmt.Fprintln(stderr, "pubsub-client: warning: -insecure: the server's certificate is not verified; anyone on the path can read and change this session")
		cfg.InsecureSkipVerify = true
	}
	opts.TLSConfig = cfg
	return opts, nil
}

// dial connects to o.url with dialOptions.
func dial(ctx context.Context, o *options, stderr io.Writer) (*client.Client, error) {
	opts, err := dialOptions(o, stderr)
	if err != nil {
		return nil, err
	}
	return client.Dial(ctx, o.url, opts)
}
