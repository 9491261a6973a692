package pubsub

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
)

func TestServerPingsWithinTheInterval(t *testing.T) {
	const interval = 100 * time.Millisecond
	p := startSession(t, context.Background(), NewMux(), Options{PingInterval: interval})
	start := time.Now()
	f := p.readFrame()
	if f.Header.OpCode != ws.OpPing {
		t.Fatalf("got opcode %v, want a ping", f.Header.OpCode)
	}
	if d := time.Since(start); d > interval+time.Second {
		t.Fatalf("first ping after %v, interval %v", d, interval)
	}
}

// TestPeerThatAnswersPingsStays: a peer that answers every ping is kept
// for four pong timeouts, in which a server that ignored pongs would have
// closed it (the timeout is long enough that a loaded machine's pauses do
// not count as a missing pong).
func TestPeerThatAnswersPingsStays(t *testing.T) {
	const pongTimeout = 250 * time.Millisecond
	p := startSession(t, context.Background(), NewMux(), Options{PingInterval: 20 * time.Millisecond, PongTimeout: pongTimeout})
	for until := time.Now().Add(4 * pongTimeout); time.Now().Before(until); {
		f := p.readFrame()
		if f.Header.OpCode != ws.OpPing {
			t.Fatalf("got opcode %v, want a ping", f.Header.OpCode)
		}
		p.writeFrame(ws.MaskFrame(ws.NewPongFrame(f.Payload)))
	}
	p.send(ping(1, "alive"))
	for {
		resp := p.recvSkippingPings()
		if string(resp.GetPongResp().GetState()) == "alive" {
			return
		}
	}
}

// recvSkippingPings reads the next reply, answering the server's pings.
func (p *peer) recvSkippingPings() *pb.PubSubResp {
	p.t.Helper()
	for {
		f := p.readFrame()
		if f.Header.OpCode == ws.OpPing {
			p.writeFrame(ws.MaskFrame(ws.NewPongFrame(f.Payload)))
			continue
		}
		if f.Header.OpCode != ws.OpBinary {
			p.t.Fatalf("got opcode %v, want binary", f.Header.OpCode)
		}
		resp := &pb.PubSubResp{}
		if err := proto.Unmarshal(f.Payload, resp); err != nil {
			p.t.Fatal(err)
		}
		return resp
	}
}

func TestSilentPeerIsClosedWithPingTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	p := startSession(t, context.Background(), NewMux(), Options{PingInterval: 50 * time.Millisecond, PongTimeout: timeout})
	// The ping is sent after this, and read some time after it is sent:
	// timing from its read would count that delay against the server.
	waited := time.Now()
	if f := p.readFrame(); f.Header.OpCode != ws.OpPing {
		t.Fatalf("got opcode %v, want a ping", f.Header.OpCode)
	}
	f := p.readFrame() // not answered
	if f.Header.OpCode != ws.OpClose {
		t.Fatalf("got opcode %v, want close", f.Header.OpCode)
	}
	code, reason := ws.ParseCloseFrameData(f.Payload)
	if code != CloseGoingAway || reason != closeReasonPing {
		t.Fatalf("closed with %d %q, want 1001 %q", code, reason, closeReasonPing)
	}
	if d := time.Since(waited); d < timeout {
		t.Fatalf("closed %v after the wait for the ping began, before the pong timeout %v", d, timeout)
	}
}

func TestPongsDoNotKeepAnIdleSessionOpen(t *testing.T) {
	p := startSession(t, context.Background(), NewMux(), Options{IdleTimeout: 300 * time.Millisecond, PingInterval: 20 * time.Millisecond})
	for {
		f := p.readFrame()
		switch f.Header.OpCode {
		case ws.OpPing:
			p.writeFrame(ws.MaskFrame(ws.NewPongFrame(f.Payload)))
		case ws.OpClose:
			code, reason := ws.ParseCloseFrameData(f.Payload)
			if code != CloseNormal || reason != closeReasonIdle {
				t.Fatalf("closed with %d %q, want 1000 %q", code, reason, closeReasonIdle)
			}
			return
		default:
			t.Fatalf("got opcode %v", f.Header.OpCode)
		}
	}
}

// TestStalledSubscriberEndsAtItsDeadline: a client that never reads again
// is cut at push_stall_timeout (plus the close grace), not held until the
// write timeout by the write blocked on its full socket.
func TestStalledSubscriberEndsAtItsDeadline(t *testing.T) {
	const stall = 200 * time.Millisecond
	m, pushed := endlessPusher()
	p := startSession(t, context.Background(), m, Options{PushQueueBytes: 4 << 10, PushStallTimeout: stall, WriteTimeout: time.Minute})
	p.send(fetchReq(1, "t"))
	start := time.Now()
	if err := <-pushed; !errors.Is(err, ErrSlowConsumer) {
		t.Fatalf("push ended with %v, want ErrSlowConsumer", err)
	}
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled session was not closed")
	}
	if d := time.Since(start); d > stall+closeGrace+time.Second {
		t.Fatalf("session ended %v after its pushes stalled, deadline %v", d, stall)
	}
}
