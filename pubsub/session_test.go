package pubsub

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/internal/wstest"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// peer is the client end of a session under test, speaking raw frames.
type peer struct {
	t    *testing.T
	conn net.Conn
	done chan error
}

// overTCP makes startSession serve on loopback TCP, where an idle session's
// reader parks (after a millisecond) and the poller restarts it, instead of
// on net.Pipe. TestSessionsOverTCP sets it; no test runs in parallel.
var overTCP bool

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (srv, cli net.Conn) { return connPair(t, "tcp", "127.0.0.1:0") }

// connPair returns the two ends of a connection on network, listening at
// addr.
func connPair(t testing.TB, network, addr string) (srv, cli net.Conn) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	if cli, err = net.Dial(network, ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if srv = <-accepted; srv == nil {
		t.Fatal("accept failed")
	}
	return srv, cli
}

// startSession serves h on one end of a pipe (or, overTCP, a TCP
// connection) and returns the other end.
func startSession(t *testing.T, ctx context.Context, h Handler, opts Options) *peer {
	t.Helper()
	srv, cli := net.Pipe()
	if overTCP {
		srv, cli = tcpPair(t)
		opts.parkAfter = time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p := &peer{t: t, conn: cli, done: make(chan error, 1)}
	go func() { p.done <- Serve(ctx, srv, h, opts) }()
	t.Cleanup(func() {
		cli.Close()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Error("session did not end after the client closed")
		}
	})
	return p
}

func (p *peer) writeFrame(f ws.Frame) {
	p.t.Helper()
	p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	// One write per frame: net.Pipe blocks a zero-length write until the
	// other side reads, which a server never does for an empty payload.
	if _, err := p.conn.Write(ws.MustCompileFrame(f)); err != nil {
		p.t.Fatalf("write frame: %v", err)
	}
}

// writeAsync writes f without waiting; the server may hang up midway.
func (p *peer) writeAsync(f ws.Frame) {
	go func() {
		p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		ws.WriteFrame(p.conn, f)
	}()
}

func (p *peer) send(req *pb.PubSubReq) {
	p.t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		p.t.Fatal(err)
	}
	p.writeFrame(ws.MaskFrame(ws.NewBinaryFrame(b)))
}

func (p *peer) readFrame() ws.Frame {
	p.t.Helper()
	p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := wstest.ReadFrame(p.conn, 1<<20)
	if err != nil {
		p.t.Fatalf("read frame: %v", err)
	}
	if f.Header.Masked {
		p.t.Fatal("server frame is masked")
	}
	return f
}

func (p *peer) recv() *pb.PubSubResp {
	p.t.Helper()
	f := p.readFrame()
	if f.Header.OpCode != ws.OpBinary {
		p.t.Fatalf("got opcode %v, want binary", f.Header.OpCode)
	}
	resp := &pb.PubSubResp{}
	if err := proto.Unmarshal(f.Payload, resp); err != nil {
		p.t.Fatalf("decode reply: %v", err)
	}
	return resp
}

// expectClose reads until a close frame and returns its code and
// reason.
func (p *peer) expectClose() (ws.StatusCode, string) {
	p.t.Helper()
	for {
		f := p.readFrame()
		if f.Header.OpCode == ws.OpClose {
			return ws.ParseCloseFrameData(f.Payload)
		}
	}
}

func ping(seq int64, state string) *pb.PubSubReq {
	return &pb.PubSubReq{Sequence: seq, Req: &pb.PubSubReq_CmdPing{CmdPing: &pb.CmdPing{State: []byte(state)}}}
}

func fetchReq(seq int64, topic string) *pb.PubSubReq {
	return &pb.PubSubReq{Sequence: seq, Req: &pb.PubSubReq_CmdKafkaFetch{CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: topic}}}
}

func TestPingEchoesStateAndSequence(t *testing.T) {
	p := startSession(t, context.Background(), NewMux(), Options{})
	p.send(ping(42, "hello"))
	resp := p.recv()
	if resp.GetSequence() != 42 || string(resp.GetPongResp().GetState()) != "hello" {
		t.Fatalf("got %v, want pong with sequence 42 and state hello", resp)
	}
}

func errorOf(t *testing.T, resp *pb.PubSubResp) string {
	t.Helper()
	if resp.GetErrorResp() == nil {
		t.Fatalf("got %v, want error_resp", resp)
	}
	if resp.GetErrorResp().GetCode() != 0 {
		t.Fatalf("error code %d, want 0", resp.GetErrorResp().GetCode())
	}
	return resp.GetErrorResp().GetMessage()
}

func TestBadRequestsGetErrorsAndKeepTheSessionUsable(t *testing.T) {
	p := startSession(t, context.Background(), NewMux(), Options{})

	p.send(&pb.PubSubReq{Sequence: 7, Req: &pb.PubSubReq_CmdEmpty{CmdEmpty: &pb.CmdEmpty{}}})
	if resp := p.recv(); resp.GetSequence() != 7 || errorOf(t, resp) != "unknown command" {
		t.Fatalf("cmd_empty: got %v", resp)
	}

	p.send(fetchReq(8, "t")) // no Kafka handler registered on this mux
	if resp := p.recv(); resp.GetSequence() != 8 || errorOf(t, resp) != "unknown command" {
		t.Fatalf("unregistered command: got %v", resp)
	}

	p.send(&pb.PubSubReq{Sequence: 9})
	if resp := p.recv(); resp.GetSequence() != 9 || errorOf(t, resp) != "invalid request: no command" {
		t.Fatalf("no command: got %v", resp)
	}

	p.writeFrame(ws.MaskFrame(ws.NewBinaryFrame([]byte{0xff, 0xff, 0xff, 0x01, 0x02})))
	if msg := errorOf(t, p.recv()); !bytes.HasPrefix([]byte(msg), []byte("invalid request: cannot decode PubSubReq")) {
		t.Fatalf("garbage: got %q", msg)
	}

	p.send(ping(10, "still here"))
	if resp := p.recv(); resp.GetSequence() != 10 || string(resp.GetPongResp().GetState()) != "still here" {
		t.Fatalf("after bad requests: got %v", resp)
	}
}

func TestHandlerErrorBecomesErrorResp(t *testing.T) {
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		return nil, errors.New("failed to fetch message, topic: " + req.Msg.GetCmdKafkaFetch().GetTopic())
	}))
	p := startSession(t, context.Background(), m, Options{})
	p.send(fetchReq(3, "orders"))
	if resp := p.recv(); resp.GetSequence() != 3 || errorOf(t, resp) != "failed to fetch message, topic: orders" {
		t.Fatalf("got %v", resp)
	}
}

func TestHandlerPanicIsRecovered(t *testing.T) {
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(context.Context, *Request) (*pb.PubSubResp, error) {
		panic("boom")
	}))
	p := startSession(t, context.Background(), m, Options{})
	p.send(fetchReq(5, "t"))
	if resp := p.recv(); resp.GetSequence() != 5 || errorOf(t, resp) != "internal error" {
		t.Fatalf("got %v", resp)
	}
	p.send(ping(6, ""))
	if resp := p.recv(); resp.GetSequence() != 6 || resp.GetPongResp() == nil {
		t.Fatalf("session unusable after panic: %v", resp)
	}
}

// TestCloseCodes pins the close frame a session sends for each way it ends.
func TestCloseCodes(t *testing.T) {
	unmasked, _ := proto.Marshal(ping(1, ""))
	for _, tc := range []struct {
		name string
		opts Options
		// provoke makes the session close; cancel ends the session's
		// context.
		provoke func(p *peer, cancel context.CancelFunc)
		code    ws.StatusCode
		reason  string // checked when set
		// ends: the session must have ended once the close frame is read.
		ends bool
	}{
		{name: "text frame", code: ws.StatusUnsupportedData, provoke: func(p *peer, _ context.CancelFunc) {
			p.writeAsync(ws.MaskFrame(ws.NewTextFrame([]byte("hello"))))
		}},
		{name: "oversized message", opts: Options{MaxFrameBytes: 100}, code: ws.StatusMessageTooBig, provoke: func(p *peer, _ context.CancelFunc) {
			p.writeAsync(ws.MaskFrame(ws.NewBinaryFrame(make([]byte, 101))))
		}},
		{name: "oversized fragmented message", opts: Options{MaxFrameBytes: 100}, code: ws.StatusMessageTooBig, provoke: func(p *peer, _ context.CancelFunc) {
			p.writeFrame(ws.MaskFrame(ws.NewFrame(ws.OpBinary, false, make([]byte, 60))))
			p.writeAsync(ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, make([]byte, 60))))
		}},
		{name: "unmasked frame", code: ws.StatusProtocolError, provoke: func(p *peer, _ context.CancelFunc) {
			p.writeAsync(ws.NewBinaryFrame(unmasked))
		}},
		{name: "unexpected continuation", code: ws.StatusProtocolError, provoke: func(p *peer, _ context.CancelFunc) {
			p.writeAsync(ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, []byte{1})))
		}},
		{name: "close frame is echoed", code: ws.StatusNormalClosure, ends: true, provoke: func(p *peer, _ context.CancelFunc) {
			p.writeFrame(ws.MaskFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))))
		}},
		{name: "idle timeout", opts: Options{IdleTimeout: 100 * time.Millisecond}, code: ws.StatusNormalClosure, reason: "idle timeout",
			provoke: func(*peer, context.CancelFunc) {}},
		{name: "canceled context", code: ws.StatusGoingAway, provoke: func(p *peer, cancel context.CancelFunc) {
			p.send(ping(1, ""))
			p.recv()
			cancel()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			p := startSession(t, ctx, NewMux(), tc.opts)
			tc.provoke(p, cancel)
			code, reason := p.expectClose()
			if code != tc.code || (tc.reason != "" && reason != tc.reason) {
				t.Fatalf("close %d %q, want %d %q", code, reason, tc.code, tc.reason)
			}
			if !tc.ends {
				return
			}
			select {
			case err := <-p.done:
				p.done <- err
			case <-time.After(5 * time.Second):
				t.Fatal("session did not end after close")
			}
		})
	}
}

func TestFragmentedMessageIsReassembledAroundControlFrames(t *testing.T) {
	p := startSession(t, context.Background(), NewMux(), Options{})
	b, _ := proto.Marshal(ping(11, "fragmented"))
	p.writeFrame(ws.MaskFrame(ws.NewFrame(ws.OpBinary, false, b[:3])))
	p.writeFrame(ws.MaskFrame(ws.NewPingFrame([]byte("mid"))))
	if f := p.readFrame(); f.Header.OpCode != ws.OpPong || string(f.Payload) != "mid" {
		t.Fatalf("got %v %q, want pong mid", f.Header.OpCode, f.Payload)
	}
	p.writeFrame(ws.MaskFrame(ws.NewFrame(ws.OpContinuation, false, b[3:5])))
	p.writeFrame(ws.MaskFrame(ws.NewFrame(ws.OpContinuation, true, b[5:])))
	if resp := p.recv(); resp.GetSequence() != 11 || string(resp.GetPongResp().GetState()) != "fragmented" {
		t.Fatalf("got %v", resp)
	}
}

func TestPipelinedRequestsRunConcurrentlyUpToTheBound(t *testing.T) {
	const bound = 4
	var running, peak atomic.Int32
	release := make(chan struct{})
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		n := running.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{}}}, nil
	}))
	p := startSession(t, context.Background(), m, Options{MaxInFlight: bound})
	const n = 20
	go func() {
		for i := 1; i <= n; i++ {
			p.send(fetchReq(int64(i), "t"))
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for running.Load() < bound && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // give a wrongly unbounded session time to start more
	if got := running.Load(); got != bound {
		t.Fatalf("%d handlers running, want exactly %d", got, bound)
	}
	close(release)
	seen := map[int64]bool{}
	for range n {
		resp := p.recv()
		if resp.GetKafkaFetchResp() == nil || seen[resp.GetSequence()] {
			t.Fatalf("bad or duplicate reply %v", resp)
		}
		seen[resp.GetSequence()] = true
	}
	for i := int64(1); i <= n; i++ {
		if !seen[i] {
			t.Fatalf("no reply for sequence %d", i)
		}
	}
	if peak.Load() > bound {
		t.Fatalf("peak concurrency %d above bound %d", peak.Load(), bound)
	}
}

func TestPushSendsRepliesWithTheRequestSequence(t *testing.T) {
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		for i := range 3 {
			err := req.Push(ctx, &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{
				Messages: []*pb.KafkaMessage{{Offset: int64(i)}},
			}}})
			if err != nil {
				return nil, err
			}
		}
		return nil, nil
	}))
	p := startSession(t, context.Background(), m, Options{})
	p.send(fetchReq(77, "t"))
	for i := range 3 {
		resp := p.recv()
		if resp.GetSequence() != 77 || resp.GetKafkaFetchResp().GetMessages()[0].GetOffset() != int64(i) {
			t.Fatalf("push %d: got %v", i, resp)
		}
	}
}

func TestClientThatStopsReadingIsClosedAfterWriteTimeout(t *testing.T) {
	big := make([]byte, 64<<10)
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{
			Messages: []*pb.KafkaMessage{{Value: big}},
		}}}, nil
	}))
	p := startSession(t, context.Background(), m, Options{WriteTimeout: 100 * time.Millisecond, MaxInFlight: 2})
	go func() {
		for i := range 4 { // replies are never read: net.Pipe has no buffer
			b, _ := proto.Marshal(fetchReq(int64(i), "t"))
			if ws.WriteFrame(p.conn, ws.MaskFrame(ws.NewBinaryFrame(b))) != nil {
				return
			}
		}
	}()
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("session that cannot write did not end")
	}
}

func TestNoGoroutineLeakAfterSessionsEnd(t *testing.T) {
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for range 50 {
		srv, cli := net.Pipe()
		wg.Add(1)
		go func() {
			defer wg.Done()
			Serve(context.Background(), srv, NewMux(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		}()
		b, _ := proto.Marshal(ping(1, "x"))
		ws.WriteFrame(cli, ws.MaskFrame(ws.NewBinaryFrame(b)))
		wstest.ReadFrame(cli, 1<<20)
		cli.Close()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after sessions ended, %d before", n, before)
	}
}

func TestOnRejectsUnknownCommandNames(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("On accepted a command that is not in the schema")
		}
	}()
	NewMux().On("cmd_nonexistent", HandlerFunc(pong))
}

// endlessPusher returns a mux whose cmd_kafka_fetch pushes records of
// 1000 bytes until a push fails, and the channel that then receives the
// push's error.
func endlessPusher() (*Mux, <-chan error) {
	pushed := make(chan error, 1)
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		for i := 0; ; i++ {
			err := req.Push(ctx, &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{
				Messages: []*pb.KafkaMessage{{Offset: int64(i), Value: make([]byte, 1000)}},
			}}})
			if err != nil {
				pushed <- err
				return nil, nil
			}
		}
	}))
	return m, pushed
}

func TestSlowConsumerIsPausedThenClosedWith4008(t *testing.T) {
	m, pushed := endlessPusher()
	p := startSession(t, context.Background(), m, Options{PushQueueBytes: 4 << 10, PushStallTimeout: 200 * time.Millisecond})
	p.send(fetchReq(1, "t"))
	select {
	case err := <-pushed:
		if !errors.Is(err, ErrSlowConsumer) {
			t.Fatalf("push ended with %v, want ErrSlowConsumer", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pushes to a client that does not read were never stopped")
	}
	// The client wakes up: it gets what was in flight, in order, then 4008.
	next := int64(0)
	for {
		f := p.readFrame()
		if f.Header.OpCode == ws.OpClose {
			if code, _ := ws.ParseCloseFrameData(f.Payload); code != CloseSlowConsumer {
				t.Fatalf("close code %d, want 4008", code)
			}
			break
		}
		var resp pb.PubSubResp
		proto.Unmarshal(f.Payload, &resp)
		if got := resp.GetKafkaFetchResp().GetMessages()[0].GetOffset(); got != next {
			t.Fatalf("push %d arrived as %d", next, got)
		}
		next++
	}
}

// TestSessionsOverTCP runs the session tests that do not rely on net.Pipe's
// lack of buffering on loopback TCP, where readers park between messages:
// the poller must restart them, and idle timeouts, pings, closes and
// shutdown must work the same on parked sessions.
func TestSessionsOverTCP(t *testing.T) {
	overTCP = true
	defer func() { overTCP = false }()
	for name, test := range map[string]func(*testing.T){
		"ping":           TestPingEchoesStateAndSequence,
		"bad requests":   TestBadRequestsGetErrorsAndKeepTheSessionUsable,
		"handler error":  TestHandlerErrorBecomesErrorResp,
		"handler panic":  TestHandlerPanicIsRecovered,
		"close codes":    TestCloseCodes,
		"fragments":      TestFragmentedMessageIsReassembledAroundControlFrames,
		"pipelined":      TestPipelinedRequestsRunConcurrentlyUpToTheBound,
		"push":           TestPushSendsRepliesWithTheRequestSequence,
		"order":          TestOrderCountsRequestsPerCommand,
		"after reply":    TestAfterReplyRunsOnceTheReplyIsWritten,
		"pings":          TestServerPingsWithinTheInterval,
		"pongs":          TestPeerThatAnswersPingsStays,
		"silent peer":    TestSilentPeerIsClosedWithPingTimeout,
		"pongs and idle": TestPongsDoNotKeepAnIdleSessionOpen,
		"push encoded":   TestPushEncodedSendsWhatPushSends,
	} {
		t.Run(name, test)
	}
}
