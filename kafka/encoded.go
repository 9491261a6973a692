package kafka

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// Pushes of records from the record cache are encoded once for all the
// subscribers that deliver the same records: subscribers that keep up read
// the same run of the cache after each poll of the shared reader, so they
// push the same records in the same grouping. A push is known by its first
// record (its address, so a topic deleted and made again does not match),
// the number of records and the offset to ask for next, and by the View
// of its subscribers: those with equal views (View.Key) share the records
// they see, filtered once, and their encoding; those that see every record
// filter nothing. A push without records carries only next_offset, and is
// the same for every view.

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

// pushKey names one push.
type pushKey struct {
	first *kgo.Record
	n     int
	next  int64
	view  string // the View.Key of its subscribers
}

// encodedPush is one push, encoded by the first subscriber that needs it.
type encodedPush struct {
	once sync.Once
	e    *pubsub.EncodedReply // nil when the view sees none of the records
	err  error
	// bytes is what it counts in encodedPushes.bytes; guarded by its mu.
	bytes int
}

// pushReply is the push of records of topic/partition to a subscriber,
// which goes on at next.
func pushReply(topic string, partition int32, records []*kgo.Record, next int64) *pb.PubSubResp {
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{
		Messages:   messagesOf(records),
		Topic:      topic,
		Partition:  partition,
		NextOffset: next,
	}}}
}

// encode returns the encoded push of the records of out that view sees, encoding it on first use and keeping at most
// maxEncodedPushes of maxBytes in all. It returns nil when out has records
// and view sees none of them; a push of out without records carries only
// its next_offset.
func (p *encodedPushes) encode(topic string, partition int32, out *reply, view keyedView, maxBytes int) (*pubsub.EncodedReply, error) {
	key := pushKey{next: out.next}
	if len(out.records) > 0 {
		key = pushKey{out.records[0], len(out.records), out.next, view.key}
	}
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
		recs := out.records
		if len(recs) > 0 && !view.All() {
			recs = visibleOf(view.View, recs)
		}
		if len(recs) > 0 || len(out.records) == 0 {
			ep.e, ep.err = pubsub.EncodeReply(pushReply(topic, partition, recs, out.next))
		}
		if ep.err == nil {
			p.added(key, ep, maxBytes)
		}
	})
	return ep.e, ep.err
}

// added counts the bytes of ep, just encoded (or found to hold no record
// of its view), and evicts the oldest pushes beyond the bounds. A push
// evicted while it was encoded is not counted: it is no longer kept here.
func (p *encodedPushes) added(key pushKey, ep *encodedPush, maxBytes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byKey[key] != ep {
		return
	}
	if ep.e != nil {
		ep.bytes = ep.e.Len()
	}
	p.bytes += ep.bytes
	for len(p.order) > 1 && (len(p.order) > maxEncodedPushes || p.bytes > maxBytes) {
		old := p.byKey[p.order[0]]
		delete(p.byKey, p.order[0])
		p.order[0] = pushKey{}
		p.order = p.order[1:]
		p.bytes -= old.bytes
	}
}
