package client

import (
	"context"
	"fmt"
	"sync"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// Subscription is a live cmd_kafka_subscribe: the server pushes records of
// the subscribed partitions until Unsubscribe or the end of the connection.
type Subscription struct {
	// Sequence is the subscribing request's sequence; every push carries it.
	Sequence int64
	// Starts are the offsets each partition starts at.
	Starts []*pb.KafkaPartitionOffset

	c      *Client
	ch     chan *pb.PubSubResp
	ready  chan struct{} // a token wakes the pump: the queue grew or ended
	stop   chan struct{} // closed when Unsubscribe starts: pushes are dropped
	pumped chan struct{} // closed when the pump has closed ch
	once   sync.Once

	mu    sync.Mutex
	queue []queuedPush // pushes the reader of C has not taken
	ended bool         // no push follows the queued ones
}

// subscriptionBuffer is how many pushes C holds for its reader; the
// pushes after them wait in the subscription's queue, counted against
// Options.PushBufferBytes.
const subscriptionBuffer = 64

// queuedPush is a push and its size on the wire.
type queuedPush struct {
	resp *pb.PubSubResp
	size int
}

// Subscribe sends cmd and waits for the server's acknowledgement. Pushes
// (kafka_fetch_resp with topic and partition set, or error_resp for a
// partition that failed) arrive on C in order.
func (c *Client) Subscribe(ctx context.Context, cmd *pb.CmdKafkaSubscribe) (*Subscription, error) {
	sub := &Subscription{
		c:      c,
		ch:     make(chan *pb.PubSubResp, subscriptionBuffer),
		ready:  make(chan struct{}, 1),
		stop:   make(chan struct{}),
		pumped: make(chan struct{}),
	}
	go sub.pump()
	resp, err := c.do(ctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaSubscribe{CmdKafkaSubscribe: cmd}}, sub)
	if err != nil || resp.GetKafkaSubscribeResp() == nil {
		c.forget(sub)
		if err == nil {
			err = fmt.Errorf("client: unexpected reply %v", resp)
		}
		return nil, err
	}
	sub.Starts = resp.GetKafkaSubscribeResp().GetPartitions()
	return sub, nil
}

// C delivers the subscription's pushes in order. It is closed after
// Unsubscribe or Close, which drop the pushes not taken (so does a client
// that ends the connection itself, as with ErrPingTimeout), or once the
// connection ended otherwise and the pushes received before were taken. C holds up to 64 pushes; the
// pushes after them wait for the reader of C in a queue of their own, so
// the connection reads on: requests, also those made between two
// reads of C, get their replies. While the pushes of all subscriptions of
// the connection that wait exceed Options.PushBufferBytes and no request
// waits for a reply, the client stops reading the connection; a reader
// that stays away longer than the server's push stall timeout has its
// session ended as a slow consumer (close 4008).
func (s *Subscription) C() <-chan *pb.PubSubResp { return s.ch }

// Unsubscribe ends the subscription: C is closed when it returns, and the
// pushes it had not delivered are dropped.
func (s *Subscription) Unsubscribe(ctx context.Context) error {
	s.once.Do(func() { close(s.stop) })
	<-s.pumped
	_, err := s.c.Do(ctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaUnsubscribe{
		CmdKafkaUnsubscribe: &pb.CmdKafkaUnsubscribe{Subscription: s.Sequence},
	}})
	s.c.forget(s)
	return err
}

// enqueue hands a push of size bytes to the reader of C, through C's
// buffer when nothing is queued before it and there is room, else through
// the queue; it reports false, queueing nothing, once the subscription
// ended or Unsubscribe started. It holds s.mu while it sends, and the pump
// closes C only after drop has marked the subscription ended under s.mu,
// so it never sends on a closed C.
func (s *Subscription) enqueue(resp *pb.PubSubResp, size int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
		return false
	default:
	}
	if s.ended {
		return false
	}
	if len(s.queue) == 0 {
		// Nothing waits before it: C's buffer takes it at once when it has
		// room, so a push received before a reply is on C by the time the
		// reply is.
		select {
		case s.ch <- resp:
			s.c.pushes.release(size)
			return true
		default:
		}
	}
	s.queue = append(s.queue, queuedPush{resp, size})
	s.wake()
	return true
}

// end says that no push follows the queued ones: C is closed once they
// are taken.
func (s *Subscription) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	s.wake()
}

// wake makes the pump look at the queue again.
func (s *Subscription) wake() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// pump hands the queued pushes to the reader of C one at a time, until
// the subscription ended and its queue is empty, or Unsubscribe or Close
// started; then it releases what is left and closes C.
func (s *Subscription) pump() {
	defer close(s.pumped)
	defer close(s.ch)
	discard := true // Unsubscribe or Close: what C's buffer holds is dropped too
	defer func() { s.drop(discard) }()
	defer func() {
		if p := recover(); p != nil {
			s.c.fail(fmt.Errorf("client: subscription panic: %v", p))
		}
	}()
	for {
		s.mu.Lock()
		ended, empty := s.ended, len(s.queue) == 0
		var next queuedPush
		if !empty {
			next = s.queue[0]
		}
		s.mu.Unlock()
		if empty {
			if ended {
				discard = false // the reader of C takes what its buffer holds
				return
			}
			select {
			case <-s.ready:
				continue
			case <-s.stop:
				return
			case <-s.c.pushes.quit:
				return
			}
		}
		select {
		case <-s.stop: // taken before a push when both are ready
			return
		case <-s.c.pushes.quit:
			return
		default:
		}
		select {
		case s.ch <- next.resp:
		case <-s.stop:
			return
		case <-s.c.pushes.quit:
			return
		}
		s.mu.Lock()
		s.queue[0] = queuedPush{}
		s.queue = s.queue[1:]
		s.mu.Unlock()
		s.c.pushes.release(next.size)
	}
}

// drop releases the pushes left in the queue and marks the subscription
// ended; with discard it also empties C's buffer.
func (s *Subscription) drop(discard bool) {
	s.mu.Lock()
	n := 0
	for _, q := range s.queue {
		n += q.size
	}
	s.queue = nil
	s.ended = true
	for discard {
		select {
		case <-s.ch: // its bytes were released when it went in
			continue
		default:
		}
		break
	}
	s.mu.Unlock()
	if n > 0 {
		s.c.pushes.release(n)
	}
}

// forget unregisters sub and closes its channel.
func (c *Client) forget(sub *Subscription) {
	c.mu.Lock()
	delete(c.subs, sub.Sequence)
	c.mu.Unlock()
	sub.end()
}
