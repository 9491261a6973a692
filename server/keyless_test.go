package server_test

import (
	"net"
	"net/http"
	"testing"

	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/pubsub"
	"github.com/envoy-pubsub/gateway/server"
)

// muxResolver starts every upgrade as a session of an empty mux (it
// answers pings).
type muxResolver struct{}

func (muxResolver) Resolve(*http.Request) (server.Route, error) {
	return server.Route{Handler: pubsub.NewMux()}, nil
}

func serve(t *testing.T, opts server.Options) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := server.New(muxResolver{}, opts)
	go s.Serve(ln)
	t.Cleanup(func() { ln.Close(); s.Shutdown(t.Context()) })
	return ln.Addr().String()
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

const keyed = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

// With KeylessUpgrade both handshakes start a session: the HTTP/1.1 one
// with its Sec-WebSocket-Accept, and the keyless one Envoy forwards for an
// HTTP/2 WebSocket, answered 101 without an accept value.
func TestKeylessUpgradeIsServedWhenAllowed(t *testing.T) {
	addr := serve(t, server.Options{KeylessUpgrade: true})

	conn := dialTCP(t, addr)
	resp, br := testkit.RawUpgrade(t, conn, testkit.EnvoyH2UpgradeRequest("/kafka", ""))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "" {
		t.Fatalf("keyless upgrade: %d %v, want 101 without Sec-WebSocket-Accept", resp.StatusCode, resp.Header)
	}
	testkit.RawPing(t, conn, br, "h2")

	conn = dialTCP(t, addr)
	resp, br = testkit.RawUpgrade(t, conn, testkit.EnvoyH2UpgradeRequest("/kafka", keyed))
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("keyed upgrade: %d %v, want 101 with the RFC 6455 accept value", resp.StatusCode, resp.Header)
	}
	testkit.RawPing(t, conn, br, "h1")

	// The keyless form still needs everything else of a handshake.
	for name, req := range map[string]string{
		"no version":   "GET /kafka HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"version 8":    "GET /kafka HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n\r\n",
		"no upgrade":   "GET /kafka HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Version: 13\r\n\r\n",
		"POST request": "POST /kafka HTTP/1.1\r\nHost: g\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n",
	} {
		resp, _ := testkit.RawUpgrade(t, dialTCP(t, addr), req)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", name, resp.StatusCode)
		}
	}
}

// Without the option (the standalone server's public listener) the keyless
// form is refused with 400.
func TestKeylessUpgradeIsRefusedByDefault(t *testing.T) {
	addr := serve(t, server.Options{})
	resp, _ := testkit.RawUpgrade(t, dialTCP(t, addr), testkit.EnvoyH2UpgradeRequest("/kafka", ""))
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("keyless upgrade without the option: %d, want 400", resp.StatusCode)
	}
	conn := dialTCP(t, addr)
	resp, br := testkit.RawUpgrade(t, conn, testkit.EnvoyH2UpgradeRequest("/kafka", keyed))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("keyed upgrade: %d", resp.StatusCode)
	}
	testkit.RawPing(t, conn, br, "h1")
}
