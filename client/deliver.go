package client

import (
	"errors"
	"sync"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// Defaults of the push buffer options.
const (
	defaultPushBufferBytes    = 4 << 20
	defaultMaxPushBufferBytes = 64 << 20
)

// ErrPushBufferFull ends a connection whose subscriptions held more than
// Options.MaxPushBufferBytes of pushes that their readers had not taken,
// while requests waited for replies that might be behind those pushes.
var ErrPushBufferFull = errors.New("client: subscription readers fell behind by more than MaxPushBufferBytes while requests waited for replies")

// pushBuffer counts the bytes of the pushes that subscriptions hold for
// their readers, and lets the connection's reader wait for room.
type pushBuffer struct {
	pause, limit int // Options.PushBufferBytes, Options.MaxPushBufferBytes

	mu   sync.Mutex
	held int

	room     chan struct{} // a token wakes the waiting reader
	quit     chan struct{} // closed when the client closes the connection
	quitOnce sync.Once
}

// init sets the buffer up with the thresholds of opts.
func (b *pushBuffer) init(opts Options) {
	b.pause, b.limit = opts.PushBufferBytes, opts.MaxPushBufferBytes
	if b.pause <= 0 {
		b.pause = defaultPushBufferBytes
	}
	if b.limit <= 0 {
		b.limit = defaultMaxPushBufferBytes
	}
	b.limit = max(b.limit, b.pause)
	b.room = make(chan struct{}, 1)
	b.quit = make(chan struct{})
}

// hold counts n more bytes held; it reports false, counting nothing, when
// they would take a buffer that holds something past its limit.
func (b *pushBuffer) hold(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.held > 0 && b.held+n > b.limit {
		return false
	}
	b.held += n
	return true
}

// release uncounts n bytes and wakes the reader once the buffer is back
// within its pause threshold.
func (b *pushBuffer) release(n int) {
	b.mu.Lock()
	b.held -= n
	below := b.held <= b.pause
	b.mu.Unlock()
	if below {
		b.wake()
	}
}

// full reports whether the buffer holds more than its pause threshold.
func (b *pushBuffer) full() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.held > b.pause
}

// wake makes a waiting reader check again.
func (b *pushBuffer) wake() {
	select {
	case b.room <- struct{}{}:
	default:
	}
}

// stop ends any wait of the reader for good, and makes the subscriptions
// drop the pushes their readers did not take.
func (b *pushBuffer) stop() { b.quitOnce.Do(func() { close(b.quit) }) }

// deliver queues a push of size bytes for sub. The reader never waits for
// the application to take it: a request made from a subscription's reader
// (a Commit in OnAssignment) must get its reply, which may be behind more
// pushes. Only while the pushes held exceed PushBufferBytes and no request
// waits for a reply does the reader pause before queueing the next push,
// and read nothing, so the server's flow control slows the subscriptions.
func (c *Client) deliver(sub *Subscription, resp *pb.PubSubResp, size int) error {
	for c.pushes.full() && !c.awaitingReplies() {
		c.delivering.Store(true)
		select {
		case <-c.pushes.room:
		case <-c.pushes.quit:
			c.delivering.Store(false)
			return ErrClosed
		}
		c.delivering.Store(false)
	}
	if !c.pushes.hold(size) {
		return ErrPushBufferFull
	}
	if !sub.enqueue(resp, size) {
		c.pushes.release(size)
	}
	return nil
}

// awaitingReplies reports whether any request waits for its reply.
func (c *Client) awaitingReplies() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending) > 0
}
