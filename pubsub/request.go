package pubsub

import (
	"context"
	"errors"
	"sync"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// ErrSessionClosed is returned by Request.Push after the session ended.
var ErrSessionClosed = errors.New("pubsub: session closed")

// Request is one decoded client request being served.
type Request struct {
	// Msg is the decoded request.
	Msg *pb.PubSubReq
	// Command is the name of the command set in Msg.
	Command string
	s       *session
	// order is the request's position among the session's requests of
	// the same command; see Order.
	order uint64
	// afterReply run once the reply is written; see AfterReply.
	afterReply []func()
	// reserved are the reply bytes taken with Reserve.
	reserved int64
	// body is the reply set with ReplyWith.
	body ReplyBody
}

// Reserve makes the request hold n bytes of the session's and the
// process's reply budgets for the reply the handler is about to build. More
// than it holds waits while the budgets are spent (the client has not read
// earlier replies, or the process holds its limit); less gives the rest
// back at once, when the reply turns out smaller than feared. A handler
// calls it before it allocates a large reply (or asks Kafka for one), from
// its own goroutine, so that memory is bounded before it is used; the bytes
// are given back once the reply is written. Reserve fails with ctx's error,
// or ErrSessionClosed once the session has ended.
func (r *Request) Reserve(ctx context.Context, n int) error {
	more := int64(max(n, 0)) - r.reserved
	if more < 0 {
		r.s.charge(more)
	} else if more > 0 {
		if err := r.s.reserve(ctx, more, r.reserved); err != nil {
			return err
		}
	}
	r.reserved += more
	return nil
}

// AfterReply registers f to run once the handler's reply has been encoded
// and written (or has failed or been dropped), so that a handler that built
// its reply on pooled memory can give that memory back in f. The handler
// calls it before it returns; pushed replies are encoded when pushed and
// need no such hook.
func (r *Request) AfterReply(f func()) { r.afterReply = append(r.afterReply, f) }

// ReplyWith makes body the request's reply: a handler that encodes its
// reply itself calls it and returns a nil reply and a nil error. The engine
// encodes body after the handler returns, with the request's sequence, as
// it would encode a returned reply: counted under the reply budgets as
// BodySize bytes beyond what the request reserved, written, and then the
// AfterReply functions run (so body may be encoded from pooled memory they
// give back). A reply or an error the handler returns is sent instead.
func (r *Request) ReplyWith(body ReplyBody) { r.body = body }

// Order returns the request's position among the requests of the same
// command that the session read before it (0 for the first). Handlers run
// concurrently; one whose effects must keep the client's order (a write)
// waits for the requests of lower order.
func (r *Request) Order() uint64 { return r.order }

// Sequence returns the request's sequence, which every reply echoes.
func (r *Request) Sequence() int64 { return r.Msg.GetSequence() }

// Push queues a server-initiated reply carrying this request's sequence, for
// streaming commands. Pushes of a session are written in order. Push blocks
// while the session's push queue is full (the client reads slower than it is
// fed) and fails with ErrSlowConsumer if that lasts PushStallTimeout, or
// with ErrSessionClosed once the session has ended.
// Push also gives up, with ctx's error, when ctx is done.
func (r *Request) Push(ctx context.Context, resp *pb.PubSubResp) error {
	resp.Sequence = r.Msg.GetSequence()
	return r.s.enqueuePush(ctx, resp)
}

// Hold marks a stream of this request (a subscription) as live until
// release is called: a session with live streams is not closed as idle,
// since its client need not send anything while it is being pushed to.
func (r *Request) Hold() (release func()) {
	r.s.streams.Add(1)
	var once sync.Once
	return func() { once.Do(func() { r.s.streams.Add(-1) }) }
}

// Context returns the context of the request's session, canceled when the
// session ends; streaming handlers stop their pushes when it is done.
func (r *Request) Context() context.Context { return r.s.ctx }
