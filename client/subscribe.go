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

	c    *Client
	ch   chan *pb.PubSubResp
	stop chan struct{} // closed when Unsubscribe starts: pushes are dropped
	once sync.Once
	mu   sync.Mutex
	done bool
}

// Subscribe sends cmd and waits for the server's acknowledgement. Pushes
// (kafka_fetch_resp with topic and partition set, or error_resp for a
// partition that failed) arrive on C in order.
func (c *Client) Subscribe(ctx context.Context, cmd *pb.CmdKafkaSubscribe) (*Subscription, error) {
	sub := &Subscription{c: c, ch: make(chan *pb.PubSubResp, 64), stop: make(chan struct{})}
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

// C delivers the subscription's pushes; it is closed after Unsubscribe or
// when the connection ends. A reader that stops reading C stalls the
// connection, which the server ends as a slow consumer.
func (s *Subscription) C() <-chan *pb.PubSubResp { return s.ch }

// Unsubscribe ends the subscription; pushes not yet read are dropped.
func (s *Subscription) Unsubscribe(ctx context.Context) error {
	s.once.Do(func() { close(s.stop) })
	_, err := s.c.Do(ctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaUnsubscribe{
		CmdKafkaUnsubscribe: &pb.CmdKafkaUnsubscribe{Subscription: s.Sequence},
	}})
	s.c.forget(s)
	return err
}

// deliver hands a push to the reader of C, unless Unsubscribe started.
func (s *Subscription) deliver(resp *pb.PubSubResp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	select {
	case s.ch <- resp:
	case <-s.stop:
	}
}

// end closes C once.
func (s *Subscription) end() {
	s.once.Do(func() { close(s.stop) })
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.done = true
		close(s.ch)
	}
}

// forget unregisters sub and closes its channel.
func (c *Client) forget(sub *Subscription) {
	c.mu.Lock()
	delete(c.subs, sub.Sequence)
	c.mu.Unlock()
	sub.end()
}
