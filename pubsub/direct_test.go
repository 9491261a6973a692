package pubsub

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// TestPushesWrittenAtOnceStayWholeAndInOrder pushes frames of many sizes,
// each larger than the server's send buffer, to a client that reads only
// once the socket buffers are full: the pushes written at once by their
// pusher, those the socket took only in part and those queued behind them
// all arrive whole and in order.
func TestPushesWrittenAtOnceStayWholeAndInOrder(t *testing.T) {
	// A unix socket holds what its reader has not read against its
	// writer's send buffer, here smaller than a push: writing one at once
	// leaves a rest.
	srv, cli := unixPair(t)
	defer cli.Close()
	srv.(*net.UnixConn).SetWriteBuffer(4 << 10)
	const pushes = 300
	var want [][]byte
	push := func(i int) *pb.PubSubResp {
		return fetchPush(strings.Repeat(fmt.Sprint(i%10), 9000+23*i)) // under maxDirectPush
	}
	for i := range pushes {
		resp := push(i)
		resp.Sequence = 5
		b, _ := proto.Marshal(resp)
		want = append(want, b)
	}
	var pushed atomic.Int32
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		for i := range pushes {
			var err error
			if i%3 == 0 {
				err = req.Push(ctx, push(i))
			} else {
				err = req.PushEncoded(ctx, EncodeBody(marshalled{push(i)}))
			}
			if err != nil {
				return nil, err
			}
			pushed.Add(1)
		}
		return nil, nil
	}))
	Start(context.Background(), srv, m, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
	req, _ := proto.Marshal(fetchReq(5, "t"))
	if err := ws.WriteFrame(cli, ws.MaskFrame(ws.NewBinaryFrame(req))); err != nil {
		t.Fatal(err)
	}
	// Far more than the socket buffers hold: the later pushes queue.
	eventually(t, "pushes to fill the socket", func() bool { return pushed.Load() >= 100 })
	cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range pushes {
		h, err := ws.ReadHeader(cli)
		if err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(cli, payload); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		if !h.Fin || h.OpCode != ws.OpBinary || !bytes.Equal(payload, want[i]) {
			t.Fatalf("push %d arrived as %+v with %d bytes, want %d", i, h, len(payload), len(want[i]))
		}
	}
}

// unixPair returns the two ends of a unix socket connection.
func unixPair(t *testing.T) (srv, cli net.Conn) {
	return connPair(t, "unix", filepath.Join(t.TempDir(), "s"))
}
