package pubsub

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/internal/wstest"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// FuzzRequest sends any payload as one binary message: the session must
// answer it with exactly one well-formed reply and stay usable.
func FuzzRequest(f *testing.F) {
	for _, r := range []*pb.PubSubReq{ping(1, "x"), fetchReq(2, "t"), {Sequence: 3}} {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	f.Add([]byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, payload []byte) {
		p := startSession(t, context.Background(), NewMux(), Options{MaxFrameBytes: 1 << 16})
		if len(payload) > 1<<16 {
			return
		}
		p.writeFrame(ws.MaskFrame(ws.NewBinaryFrame(payload)))
		resp := p.recv()
		var req pb.PubSubReq
		if proto.Unmarshal(payload, &req) == nil && resp.GetSequence() != req.GetSequence() {
			t.Fatalf("reply sequence %d, request sequence %d", resp.GetSequence(), req.GetSequence())
		}
		if resp.GetResp() == nil {
			t.Fatalf("reply without content: %v", resp)
		}
		p.send(ping(99, "after"))
		if resp := p.recv(); resp.GetSequence() != 99 {
			t.Fatalf("session unusable after %x: %v", payload, resp)
		}
	})
}

// FuzzFrameStream writes any byte stream as the client side: the session must
// end cleanly, never panic, and write only well-formed frames.
func FuzzFrameStream(f *testing.F) {
	b, _ := proto.Marshal(ping(1, "x"))
	f.Add(ws.MustCompileFrame(ws.MaskFrame(ws.NewBinaryFrame(b))))
	f.Add(ws.MustCompileFrame(ws.MaskFrame(ws.NewTextFrame([]byte("hi")))))
	f.Add(ws.MustCompileFrame(ws.MaskFrame(ws.NewPingFrame([]byte("p")))))
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, stream []byte) {
		srv, cli := net.Pipe()
		done := make(chan error, 1)
		go func() {
			done <- Serve(context.Background(), srv, NewMux(), Options{
				MaxFrameBytes: 1 << 12,
				Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
		}()
		go func() {
			cli.SetWriteDeadline(time.Now().Add(2 * time.Second))
			cli.Write(stream)
			cli.Close()
		}()
		cli.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			f, err := wstest.ReadFrame(cli, 1<<20)
			if err != nil {
				break
			}
			if f.Header.Masked || ws.CheckHeader(f.Header, ws.StateClientSide) != nil {
				t.Fatalf("server wrote a bad frame header %+v", f.Header)
			}
		}
		cli.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("session did not end")
		}
	})
}
