package pubsub

import (
	"context"
	"testing"
	"time"

	"github.com/gobwas/ws"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// endReport serves a session and returns its End once it is reported.
func endReport(t *testing.T, opts Options) (*peer, <-chan End) {
	t.Helper()
	ends := make(chan End, 1)
	opts.OnEnd = func(e End) { ends <- e }
	return startSession(t, context.Background(), NewMux(), opts), ends
}

func waitEnd(t *testing.T, ends <-chan End) End {
	t.Helper()
	select {
	case e := <-ends:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("the session's end was not reported")
		return End{}
	}
}

func TestEndReportsTheServersCloseCodeAndTheBytes(t *testing.T) {
	p, ends := endReport(t, Options{IdleTimeout: 100 * time.Millisecond})
	p.send(&pb.PubSubReq{Sequence: 1, Req: &pb.PubSubReq_CmdPing{CmdPing: &pb.CmdPing{State: []byte("x")}}})
	pong := p.readFrame()
	closing := p.readFrame()
	if closing.Header.OpCode != ws.OpClose {
		t.Fatalf("got %v, want the idle close", closing.Header.OpCode)
	}
	p.writeFrame(ws.MaskFrame(ws.NewCloseFrame(closing.Payload)))
	e := waitEnd(t, ends)
	if e.Code != int(CloseNormal) || e.Reason != closeReasonIdle {
		t.Errorf("end %d %q, want %d %q", e.Code, e.Reason, CloseNormal, closeReasonIdle)
	}
	wantWritten := int64(2 + len(pong.Payload) + 2 + len(closing.Payload))
	if e.BytesWritten != wantWritten || e.BytesRead == 0 {
		t.Errorf("end counted %d bytes written (want %d) and %d read", e.BytesWritten, wantWritten, e.BytesRead)
	}
}

func TestEndOfAConnectionWithoutCloseFrameIsAbnormal(t *testing.T) {
	p, ends := endReport(t, Options{})
	p.conn.Close()
	if e := waitEnd(t, ends); e.Code != int(CloseAbnormal) || e.Reason != "" {
		t.Errorf("end %d %q, want %d", e.Code, e.Reason, CloseAbnormal)
	}
}
