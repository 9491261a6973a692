package standalone_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/internal/wstest"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/standalone"
)

func startServer(t *testing.T, sessionYAML string) (*testkit.Server, []string) {
	t.Helper()
	k := testkit.Kafka(t)
	brokers := k.ListenAddrs()
	return testkit.StartServer(t, testkit.ClusterYAML(brokers, "", sessionYAML), nil), brokers
}

func TestPlainHTTPGets426AndUnknownPaths404(t *testing.T) {
	srv, _ := startServer(t, "")
	for path, want := range map[string]int{"/kafka": 426, "/kafka/": 426, "/other": 404, "/": 404} {
		resp, err := http.Get("http://" + srv.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d %q, want %d", path, resp.StatusCode, body, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := client.Dial(ctx, "ws://"+srv.Addr+"/other", client.Options{})
	var se ws.StatusError
	if !errors.As(err, &se) || int(se) != 404 {
		t.Fatalf("upgrade to unknown path: %v, want 404", err)
	}
}

func TestFailedHandshakeGets400(t *testing.T) {
	srv, _ := startServer(t, "")
	req, _ := http.NewRequest("GET", "http://"+srv.Addr+"/kafka", nil)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade") // no Sec-WebSocket-Key or version
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("got %d, want 400", resp.StatusCode)
	}
}

// rawDial upgrades a TCP connection by hand and returns it with the reader
// positioned after the handshake response.
func rawDial(t *testing.T, addr string, afterHandshake []byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req := "GET /kafka HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	// The client's first frame travels in the same packet as its handshake.
	if _, err := conn.Write(append([]byte(req), afterHandshake...)); err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %d", resp.StatusCode)
	}
	return conn, br
}

func TestFrameSentWithTheHandshakeIsServed(t *testing.T) {
	srv, _ := startServer(t, "")
	b, _ := proto.Marshal(&pb.PubSubReq{Sequence: 5, Req: &pb.PubSubReq_CmdPing{CmdPing: &pb.CmdPing{State: []byte("early")}}})
	_, br := rawDial(t, srv.Addr, ws.MustCompileFrame(ws.MaskFrame(ws.NewBinaryFrame(b))))
	f, err := wstest.ReadFrame(br, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var resp pb.PubSubResp
	if err := proto.Unmarshal(f.Payload, &resp); err != nil || resp.GetSequence() != 5 || string(resp.GetPongResp().GetState()) != "early" {
		t.Fatalf("got %v, %v", &resp, err)
	}
}

func closeCode(t *testing.T, c *client.Client) ws.StatusCode {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed")
	}
	var ce client.CloseError
	if !errors.As(c.Err(), &ce) {
		t.Fatalf("connection ended with %v, want a close frame", c.Err())
	}
	return ce.Code
}

func TestProtocolViolationsOverTCP(t *testing.T) {
	srv, _ := startServer(t, "session: {max_frame_bytes: 1024}\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c := srv.Dial(t, "kafka")
	if err := c.SendRaw(ws.OpText, []byte(`{"cmd_ping":{}}`)); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(t, c); code != ws.StatusUnsupportedData {
		t.Errorf("text frame: close %d, want 1003", code)
	}

	c = srv.Dial(t, "kafka")
	if err := c.SendRaw(ws.OpBinary, make([]byte, 2048)); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(t, c); code != ws.StatusMessageTooBig {
		t.Errorf("oversized frame: close %d, want 1009", code)
	}

	c = srv.Dial(t, "kafka")
	if err := c.SendRaw(ws.OpBinary, []byte("\x0a\x0bnot protobuf")); err != nil {
		t.Fatal(err)
	}
	select {
	case resp := <-c.Unmatched():
		if !strings.HasPrefix(resp.GetErrorResp().GetMessage(), "invalid request") {
			t.Errorf("garbage: got %v", resp)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reply to garbage")
	}
	if _, err := c.Do(ctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdEmpty{CmdEmpty: &pb.CmdEmpty{}}}); err == nil || err.Error() != "unknown command" {
		t.Errorf("cmd_empty: %v", err)
	}
	if _, err := c.Do(ctx, &pb.PubSubReq{}); err == nil || err.Error() != "invalid request: no command" {
		t.Errorf("no command: %v", err)
	}
	if state, err := c.Ping(ctx, []byte("alive")); err != nil || string(state) != "alive" {
		t.Errorf("session unusable: %q, %v", state, err)
	}
}

func TestShutdownSendsGoingAwayAndLeaksNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		k := testkit.Kafka(t)
		ts := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "", ""), nil)
		var clients []*client.Client
		for range 10 {
			c := ts.Dial(t, "kafka")
			if _, err := c.ListOffset(context.Background(), "missing", 0, -1); err == nil {
				t.Fatal("list offset of a missing topic succeeded")
			}
			clients = append(clients, c)
		}
		// Sessions that end on their own release everything.
		for _, c := range clients[:5] {
			c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ts.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		for _, c := range clients[5:] {
			if code := closeCode(t, c); code != ws.StatusGoingAway {
				t.Fatalf("close %d on shutdown, want 1001", code)
			}
		}
		if n := ts.Server.ActiveSessions(); n != 0 {
			t.Fatalf("%d sessions active after shutdown", n)
		}
		k.Close()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines after shutdown, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestStartFailsOnABusyAddressAndFrontWrapsTheEndpoints(t *testing.T) {
	k := testkit.Kafka(t)
	doc, err := config.Parse([]byte(testkit.ClusterYAML(k.ListenAddrs(), "", "")))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	front := func(endpoints http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/page" {
				io.WriteString(w, "page")
				return
			}
			endpoints.ServeHTTP(w, r)
		}), nil
	}
	srv, err := standalone.Start(doc, "127.0.0.1:0", standalone.Options{Logger: log, Front: front})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := standalone.Start(doc, srv.Addr(), standalone.Options{Logger: log}); err == nil {
		t.Fatal("a second server started on an address in use")
	}
	resp, err := http.Get("http://" + srv.Addr() + "/page")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "page" {
		t.Fatalf("front served %q, want page", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL("kafka"), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ping(ctx, nil); err != nil {
		t.Fatalf("ping through the front: %v", err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := closeCode(t, c); code != ws.StatusGoingAway {
		t.Fatalf("close %d on shutdown, want 1001", code)
	}
	select {
	case err := <-srv.Failed():
		t.Fatalf("the listener failed: %v", err)
	default:
	}
	if _, err := http.Get("http://" + srv.Addr() + "/page"); err == nil {
		t.Fatal("the listener still answers after Shutdown")
	}
}
