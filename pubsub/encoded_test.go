package pubsub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
)

func fetchPush(values ...string) *pb.PubSubResp {
	resp := &pb.KafkaFetchResp{Topic: "t", Partition: 3}
	for i, v := range values {
		resp.Messages = append(resp.Messages, &pb.KafkaMessage{Offset: int64(i), Value: []byte(v), Headers: []*pb.KafkaHeader{{Key: "h", Value: []byte("x")}}})
	}
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: resp}}
}

// marshalled is a ReplyBody that proto marshals, as the engine marshals a
// reply a handler returns.
type marshalled struct{ resp *pb.PubSubResp }

func (m marshalled) BodySize() int { return proto.Size(m.resp) }

func (m marshalled) AppendBody(b []byte) []byte {
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, m.resp)
	if err != nil {
		panic(err) // the tests' replies are valid
	}
	return b
}

// TestPushEncodedSendsWhatPushSends: a reply encoded once reaches sessions
// of any sequence (0, small, large) byte for byte as Push sends it.
func TestPushEncodedSendsWhatPushSends(t *testing.T) {
	shared := EncodeBody(marshalled{fetchPush(`{"a":1}`, `{"b":2}`)})
	for _, seq := range []int64{0, 1, 300, 1 << 40} {
		m := NewMux()
		m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
			if err := req.PushEncoded(ctx, shared); err != nil {
				return nil, err
			}
			return nil, req.Push(ctx, fetchPush(`{"a":1}`, `{"b":2}`))
		}))
		p := startSession(t, context.Background(), m, Options{})
		p.send(fetchReq(seq, "t"))
		encodedOnce, pushed := p.readFrame().Payload, p.readFrame().Payload
		if !bytes.Equal(encodedOnce, pushed) {
			t.Fatalf("sequence %d: PushEncoded sent %x, Push %x", seq, encodedOnce, pushed)
		}
		var resp pb.PubSubResp
		if err := proto.Unmarshal(encodedOnce, &resp); err != nil || resp.GetSequence() != seq || len(resp.GetKafkaFetchResp().GetMessages()) != 2 {
			t.Fatalf("sequence %d: decoded %v, %v", seq, &resp, err)
		}
	}
}

// TestSharedPushCountsOnceUnderTheMemoryBudget: sessions that queue the
// same encoded reply hold its bytes once in the process's budget, each its
// full size in its own.
func TestSharedPushCountsOnceUnderTheMemoryBudget(t *testing.T) {
	shared := EncodeBody(marshalled{fetchPush(string(make([]byte, 10000)))})
	mem := NewMemoryBudget(1 << 20)
	queued := make(chan struct{}, 3)
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		err := req.PushEncoded(ctx, shared)
		queued <- struct{}{}
		return nil, err
	}))
	var peers []*peer
	for range 3 { // pushes stay queued: nobody reads the pipes yet
		p := startSession(t, context.Background(), m, Options{Memory: mem})
		p.send(fetchReq(1, "t"))
		peers = append(peers, p)
	}
	for range 3 {
		<-queued
	}
	if used := mem.Used(); used != shared.Len() {
		t.Fatalf("budget holds %d bytes for one reply of %d queued by 3 sessions", used, shared.Len())
	}
	for _, p := range peers {
		p.readFrame()
	}
	eventually(t, "the budget to be given back", func() bool { return mem.Used() == 0 })
}

// TestQueuedPushesGoOutVectoredOverTCP: pushes that queue up beyond the
// write buffer on a TCP connection go out in vectored writes, frames intact
// and in order, shared and own ones mixed.
func TestQueuedPushesGoOutVectoredOverTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const pushes = 40
	value := string(make([]byte, 40<<10))
	var want [][]byte
	for i := range pushes {
		resp := fetchPush(value, fmt.Sprint(i))
		resp.Sequence = 9
		b, _ := proto.Marshal(resp)
		want = append(want, b)
	}
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		for i := range pushes {
			var err error
			if i%2 == 0 {
				err = req.PushEncoded(ctx, EncodeBody(marshalled{fetchPush(value, fmt.Sprint(i))}))
			} else {
				err = req.Push(ctx, fetchPush(value, fmt.Sprint(i)))
			}
			if err != nil {
				return nil, err
			}
		}
		return nil, nil
	}))
	served := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		if !writesVectors(conn) {
			served <- fmt.Errorf("%T does not write vectors", conn)
			return
		}
		served <- Serve(context.Background(), conn, m, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, _ := proto.Marshal(fetchReq(9, "t"))
	if err := ws.WriteFrame(conn, ws.MaskFrame(ws.NewBinaryFrame(req))); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range pushes {
		h, err := ws.ReadHeader(conn)
		if err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(conn, payload); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
		if !h.Fin || h.OpCode != ws.OpBinary || !bytes.Equal(payload, want[i]) {
			t.Fatalf("push %d arrived as %v with %d bytes, want %d", i, h, len(payload), len(want[i]))
		}
	}
	conn.Close()
	if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
		t.Logf("session ended: %v", err)
	}
}

// TestTryPushEncodedQueuesOnlyWhatFits: TryPushEncoded queues while the
// push queue has room and then reports false at once instead of waiting
// for a client that does not read.
func TestTryPushEncodedQueuesOnlyWhatFits(t *testing.T) {
	e := EncodeBody(marshalled{fetchPush(strings.Repeat("x", 3000))})
	queued := make(chan int, 1)
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		n := 0
		for ; n < 100; n++ {
			ok, err := req.TryPushEncoded(e)
			if err != nil {
				return nil, err
			}
			if !ok {
				break
			}
		}
		queued <- n
		return nil, nil
	}))
	p := startSession(t, context.Background(), m, Options{PushQueueBytes: 4 << 10})
	p.send(fetchReq(1, "t"))
	var n int
	select {
	case n = <-queued:
	case <-time.After(5 * time.Second):
		t.Fatal("TryPushEncoded waited for a client that does not read")
	}
	if n == 0 || n == 100 {
		t.Fatalf("%d pushes queued in a queue of 4 KiB, want some and then no room", n)
	}
	for i := range n {
		var resp pb.PubSubResp
		if err := proto.Unmarshal(p.readFrame().Payload, &resp); err != nil || resp.GetSequence() != 1 {
			t.Fatalf("push %d: %v, %v", i, &resp, err)
		}
	}
}

// TestReplyWithAndPushBodySendWhatAReturnedReplySends: a body the handler
// encodes itself reaches the client, as a reply and as a push, byte for
// byte as the same reply returned or pushed, for any sequence.
func TestReplyWithAndPushBodySendWhatAReturnedReplySends(t *testing.T) {
	for _, seq := range []int64{0, 1, 300, 1 << 40} {
		m := NewMux()
		m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
			if err := req.PushBody(ctx, marshalled{fetchPush(`{"a":1}`, "")}); err != nil {
				return nil, err
			}
			req.ReplyWith(marshalled{fetchPush(`{"b":2}`)})
			return nil, nil
		}))
		p := startSession(t, context.Background(), m, Options{})
		p.send(fetchReq(seq, "t"))
		// A reply does not wait behind pushes: the two come in any order.
		want := map[string]bool{}
		for _, resp := range []*pb.PubSubResp{fetchPush(`{"a":1}`, ""), fetchPush(`{"b":2}`)} {
			resp.Sequence = seq
			b, err := proto.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			want[string(b)] = true
		}
		for range 2 {
			got := p.readFrame().Payload
			if !want[string(got)] {
				t.Fatalf("sequence %d: frame %x is not one of the replies still due", seq, got)
			}
			delete(want, string(got))
		}
	}
}

// TestReplyWithEncodesBeforeAfterReplyRuns: a body encoded from pooled
// memory is encoded and written before the AfterReply hooks give that
// memory back.
func TestReplyWithEncodesBeforeAfterReplyRuns(t *testing.T) {
	hookRunsAfterEncoding(t, func(req *Request, resp *pb.PubSubResp) (*pb.PubSubResp, error) {
		req.ReplyWith(marshalled{resp})
		return nil, nil
	})
}

// TestReplyWithCountsItsBytesUntilWritten: a body larger than what its
// request reserved holds its whole size under the memory budget until it is
// written, and gives it all back then; a returned reply or error wins over
// the body.
func TestReplyWithCountsItsBytesUntilWritten(t *testing.T) {
	mem := NewMemoryBudget(1 << 20)
	body := marshalled{fetchPush(string(make([]byte, 48<<10)))}
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		if err := req.Reserve(ctx, 1000); err != nil {
			return nil, err
		}
		req.ReplyWith(body)
		switch req.Msg.GetCmdKafkaFetch().GetTopic() {
		case "error":
			return nil, errors.New("refused")
		case "reply":
			return fetchPush("returned"), nil
		}
		return nil, nil
	}))
	p := startSession(t, context.Background(), m, Options{Memory: mem})
	p.send(fetchReq(1, "t")) // the pipe takes no byte until the client reads
	size := sequenceSize(1) + body.BodySize()
	eventually(t, "the body's bytes to be held", func() bool { return mem.Used() == size })
	if got := p.readFrame().Payload; len(got) != size {
		t.Fatalf("reply of %d bytes, want %d", len(got), size)
	}
	eventually(t, "the bytes to be given back", func() bool { return mem.Used() == 0 })
	p.send(fetchReq(2, "error"))
	if msg := errorOf(t, p.recv()); msg != "refused" {
		t.Fatalf("error_resp %q, want the handler's error", msg)
	}
	p.send(fetchReq(3, "reply"))
	if resp := p.recv(); len(resp.GetKafkaFetchResp().GetMessages()) != 1 {
		t.Fatalf("%v, want the returned reply", resp)
	}
}
