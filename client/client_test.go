package client

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// serve runs a session with mux on one end of a pipe and returns a client
// on the other; cancel ends the session as a server shutdown does.
func serve(t *testing.T, mux *pubsub.Mux) (c *Client, cancel context.CancelFunc) {
	t.Helper()
	return serveWith(t, mux, Options{})
}

// serveWith is serve with a client of opts.
func serveWith(t *testing.T, mux *pubsub.Mux, opts Options) (c *Client, cancel context.CancelFunc) {
	t.Helper()
	srv, cli := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		pubsub.Serve(ctx, srv, mux, pubsub.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	}()
	c = newClient(cli, nil, opts)
	t.Cleanup(func() {
		cancel()
		c.Close()
		<-done
	})
	return c, cancel
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConcurrentRequestsGetTheirOwnReplies(t *testing.T) {
	mux := pubsub.NewMux()
	mux.On(pubsub.CmdKafkaListOffset, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		p := req.Msg.GetCmdKafkaListOffset().GetPartition()
		time.Sleep(time.Duration(10-p) * time.Millisecond) // later requests answer first
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaListOffsetResp{KafkaListOffsetResp: &pb.KafkaListOffsetResp{Offset: int64(p) * 100}}}, nil
	}))
	c, _ := serve(t, mux)
	errs := make(chan error, 10)
	for p := range int32(10) {
		go func() {
			off, err := c.ListOffset(testCtx(t), "t", p, -1)
			if err == nil && off != int64(p)*100 {
				err = errors.New("reply of another request")
			}
			errs <- err
		}()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func TestErrorRespIsAServerError(t *testing.T) {
	mux := pubsub.NewMux()
	mux.On(pubsub.CmdKafkaFetch, pubsub.HandlerFunc(func(context.Context, *pubsub.Request) (*pb.PubSubResp, error) {
		return nil, errors.New("failed to fetch message, topic: t, partition: 0, err: OFFSET_OUT_OF_RANGE")
	}))
	c, _ := serve(t, mux)
	_, err := c.Fetch(testCtx(t), "t", 0, 99)
	var se *ServerError
	if !errors.As(err, &se) || se.Code != 0 || se.Message != "failed to fetch message, topic: t, partition: 0, err: OFFSET_OUT_OF_RANGE" {
		t.Fatalf("got %v", err)
	}
	if state, err := c.Ping(testCtx(t), []byte("ok")); err != nil || string(state) != "ok" {
		t.Fatalf("ping after an error: %q, %v", state, err)
	}
}

func TestSubscriptionDeliversPushesUntilUnsubscribe(t *testing.T) {
	mux := pubsub.NewMux()
	mux.On(pubsub.CmdKafkaSubscribe, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		req.Push(ctx, &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaSubscribeResp{KafkaSubscribeResp: &pb.KafkaSubscribeResp{
			Partitions: []*pb.KafkaPartitionOffset{{Partition: 0, Offset: 5}},
		}}})
		for off := int64(5); off < 8; off++ {
			req.Push(ctx, &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{
				Topic: "t", Messages: []*pb.KafkaMessage{{Offset: off}},
			}}})
		}
		return nil, nil
	}))
	mux.On(pubsub.CmdKafkaUnsubscribe, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		seq := req.Msg.GetCmdKafkaUnsubscribe().GetSubscription()
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaUnsubscribeResp{KafkaUnsubscribeResp: &pb.KafkaUnsubscribeResp{Subscription: seq}}}, nil
	}))
	c, _ := serve(t, mux)
	sub, err := c.Subscribe(testCtx(t), &pb.CmdKafkaSubscribe{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if len(sub.Starts) != 1 || sub.Starts[0].GetOffset() != 5 {
		t.Fatalf("starts %v", sub.Starts)
	}
	for want := int64(5); want < 8; want++ {
		select {
		case resp := <-sub.C():
			if resp.GetSequence() != sub.Sequence || resp.GetKafkaFetchResp().GetMessages()[0].GetOffset() != want {
				t.Fatalf("push %v, want offset %d", resp, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no push for offset %d", want)
		}
	}
	if err := sub.Unsubscribe(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, open := <-sub.C(); open {
		t.Fatal("C still open after Unsubscribe")
	}
}

func TestServerShutdownEndsTheClient(t *testing.T) {
	c, cancel := serve(t, pubsub.NewMux())
	if _, err := c.Ping(testCtx(t), nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client not ended by the server's close")
	}
	var ce CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != ws.StatusGoingAway {
		t.Fatalf("ended with %v, want close 1001", c.Err())
	}
	if _, err := c.Ping(testCtx(t), nil); err == nil {
		t.Fatal("a request on an ended client succeeded")
	}
}
