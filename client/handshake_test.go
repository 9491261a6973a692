package client

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

func TestRefusedUpgradeCarriesTheServersReason(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte("authentication failed\nsecond line\n"))
	}))
	defer srv.Close()
	_, err := Dial(testCtx(t), "ws://"+strings.TrimPrefix(srv.URL, "http://")+"/kafka", Options{})
	var he *HandshakeError
	if !errors.As(err, &he) || he.Status != http.StatusUnauthorized || he.Message != "authentication failed" {
		t.Fatalf("dial: %v, want a HandshakeError 401 with the body's first line", err)
	}
	if !strings.HasSuffix(err.Error(), "server refused the upgrade: 401 Unauthorized: authentication failed") {
		t.Errorf("error text %q", err)
	}
	var status ws.StatusError
	if !errors.As(err, &status) || status != http.StatusUnauthorized {
		t.Errorf("dial: %v, want a ws.StatusError too", err)
	}
}
