package standalone_test

import (
	"net"
	"net/http"
	"testing"

	"github.com/envoy-pubsub/gateway/internal/testkit"
)

// The public TCP listener never takes the keyless upgrade that only Envoy's
// session socket accepts: a client could otherwise skip the WebSocket key
// check of every HTTP/1.1 handshake.
func TestPublicListenerRefusesTheKeylessUpgrade(t *testing.T) {
	srv, _ := startServer(t, "")
	conn, err := net.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, _ := testkit.RawUpgrade(t, conn, testkit.EnvoyH2UpgradeRequest("/kafka", ""))
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("keyless upgrade on the public listener: %d, want 400", resp.StatusCode)
	}
}
