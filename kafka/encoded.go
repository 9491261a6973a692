package kafka

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// Pushes of records from a shared reader's window are encoded once for all
// the subscribers that deliver the same records: subscribers that keep up
// read the same slice of the window after each append, so they push the
// same records in the same grouping. A push is known by the window's first
// record (its address, so a topic deleted and made again does not match)
// and the number of records.

// maxEncodedPushes bounds the encoded pushes a cluster keeps; their bytes
// are bounded by the cluster's window_bytes. A push still queued for some
// session stays alive there after it is evicted from here.
const maxEncodedPushes = 64

// encodedPushes keeps the recent encoded pushes of a cluster's windows,
// oldest first out.
type encodedPushes struct {
	mu    sync.Mutex
	byKey map[pushKey]*encodedPush
	order []pushKey
	bytes int
}

// pushKey names the records of one push.
type pushKey struct {
	first *kgo.Record
	n     int
}

// encodedPush is one push, encoded by the first subscriber that needs it.
type encodedPush struct {
	once sync.Once
	e    *pubsub.EncodedReply
	err  error
}

// pushReply is the push of recs of topic/partition to a subscriber.
func pushReply(topic string, partition int32, recs []*kgo.Record) *pb.PubSubResp {
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{
		Messages:  messagesOf(recs),
		Topic:     topic,
		Partition: partition,
	}}}
}

// pushWindowed pushes recs, records of the shared reader's window, encoded
// once for every subscriber that pushes the same records.
func (d *delivery) pushWindowed(ctx context.Context, recs []*kgo.Record) error {
	e, err := d.k.pushes.encode(d.topic, d.partition, recs, d.k.cfg.WindowBytes)
	if err != nil {
		return err
	}
	return d.req.PushEncoded(ctx, e)
}

// encode returns the encoded push of recs, encoding it on first use and
// keeping at most maxEncodedPushes of maxBytes in all.
func (p *encodedPushes) encode(topic string, partition int32, recs []*kgo.Record, maxBytes int) (*pubsub.EncodedReply, error) {
	key := pushKey{recs[0], len(recs)}
	p.mu.Lock()
	ep := p.byKey[key]
	if ep == nil {
		ep = &encodedPush{}
		if p.byKey == nil {
			p.byKey = make(map[pushKey]*encodedPush)
		}
		p.byKey[key] = ep
		p.order = append(p.order, key)
	}
	p.mu.Unlock()
	ep.once.Do(func() {
		ep.e, ep.err = pubsub.EncodeReply(pushReply(topic, partition, recs))
		if ep.err == nil {
			p.added(ep.e.Len(), maxBytes)
		}
	})
	return ep.e, ep.err
}

// added counts an encoded push's bytes and evicts the oldest pushes beyond
// the bounds.
func (p *encodedPushes) added(n, maxBytes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bytes += n
	for len(p.order) > 1 && (len(p.order) > maxEncodedPushes || p.bytes > maxBytes) {
		old := p.byKey[p.order[0]]
		delete(p.byKey, p.order[0])
		p.order[0] = pushKey{}
		p.order = p.order[1:]
		if old.e != nil {
			p.bytes -= old.e.Len()
		}
	}
}
