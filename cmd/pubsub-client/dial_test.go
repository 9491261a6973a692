package main

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoy-pubsub/gateway/internal/testkit"
)

func TestDialOptionsCarryTheTokenAndTheUpgradeHeader(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("  from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		o    options
		auth string
	}{
		{options{token: "abc"}, "Bearer abc"},
		{options{tokenFile: file}, "Bearer from-file"},
		{options{}, ""},
	} {
		tc.o.url, tc.o.upgradeHeader = "ws://h/k", "X-Tenant: acme"
		opts, err := dialOptions(&tc.o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if opts.Header.Get("Authorization") != tc.auth || opts.Header.Get("X-Tenant") != "acme" || opts.TLSConfig != nil {
			t.Errorf("%+v: headers %v, TLS %v; want Authorization %q", tc.o, opts.Header, opts.TLSConfig, tc.auth)
		}
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, o := range []options{{tokenFile: empty}, {tokenFile: filepath.Join(dir, "missing")}} {
		if _, err := dialOptions(&o, nil); err == nil || !strings.HasPrefix(err.Error(), "-token-file: ") {
			t.Errorf("%+v: %v, want a -token-file error", o, err)
		}
	}
}

func TestDialOptionsForWSS(t *testing.T) {
	ca := testkit.NewCA(t, "gateway CA")
	dir := t.TempDir()
	caFile := ca.WriteFile(t, dir, "ca.pem")
	certFile, keyFile := testkit.WriteKeyPair(t, ca.ClientCert(t, "reader"), dir, "reader")

	opts, err := dialOptions(&options{url: "wss://h/k", caFile: caFile, certFile: certFile, keyFile: keyFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := opts.TLSConfig
	if cfg == nil || cfg.InsecureSkipVerify || len(cfg.Certificates) != 1 || cfg.RootCAs == nil {
		t.Fatalf("TLS config %+v", cfg)
	}
	if _, err := ca.Cert.Verify(x509.VerifyOptions{Roots: cfg.RootCAs}); err != nil {
		t.Errorf("-cafile pool does not hold the CA: %v", err)
	}
	var warning strings.Builder
	if opts, err = dialOptions(&options{url: "wss://h/k", insecure: true}, &warning); err != nil || !opts.TLSConfig.InsecureSkipVerify ||
		!strings.Contains(warning.String(), "warning: -insecure") {
		t.Errorf("-insecure: %v, warning %q", err, warning.String())
	}
	if opts, _ := dialOptions(&options{url: "wss://h/k"}, nil); opts.TLSConfig == nil || opts.TLSConfig.RootCAs != nil {
		t.Errorf("wss:// alone: want the system's roots, got %+v", opts.TLSConfig)
	}
	for _, o := range []options{
		{url: "wss://h/k", caFile: filepath.Join(dir, "missing.pem")},
		{url: "wss://h/k", caFile: keyFile}, // no certificate in it
		{url: "wss://h/k", certFile: certFile, keyFile: caFile},
	} {
		if _, err := dialOptions(&o, nil); err == nil {
			t.Errorf("%+v: want an error", o)
		}
	}
}
