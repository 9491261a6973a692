package testkit

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/internal/wstest"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// EnvoyH2UpgradeRequest is the HTTP/1.1 request Envoy sends upstream for an
// HTTP/2 WebSocket (RFC 8441 extended CONNECT): GET with Upgrade: websocket
// and Connection: Upgrade, the client's Sec-WebSocket-Version, and no
// Sec-WebSocket-Key. extra header lines ("Name: value\r\n") are added.
func EnvoyH2UpgradeRequest(path, extra string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\n" + extra + "\r\n"
}

// RawUpgrade writes request on conn and returns the handshake response and
// a reader positioned after it.
func RawUpgrade(t testing.TB, conn net.Conn, request string) (*http.Response, *bufio.Reader) {
	t.Helper()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("handshake response: %v", err)
	}
	return resp, br
}

// RawPing sends a cmd_ping over an upgraded conn and waits for its pong.
func RawPing(t testing.TB, conn net.Conn, br *bufio.Reader, state string) {
	t.Helper()
	b, err := proto.Marshal(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdPing{CmdPing: &pb.CmdPing{State: []byte(state)}}})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := ws.WriteFrame(conn, ws.MaskFrame(ws.NewBinaryFrame(b))); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := wstest.ReadFrame(br, 1<<20)
		if err != nil {
			t.Fatalf("waiting for the pong: %v", err)
		}
		if f.Header.OpCode != ws.OpBinary {
			continue // a keepalive ping of the server
		}
		var resp pb.PubSubResp
		if err := proto.Unmarshal(f.Payload, &resp); err != nil || string(resp.GetPongResp().GetState()) != state {
			t.Fatalf("ping over the raw upgrade: %v, %v", &resp, err)
		}
		return
	}
}
