package kafka

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

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
// filter nothing.
//
// A subscriber whose view does not see every record would otherwise read
// every record of the cache, seen or not, to find its push: so the pushes
// of such views are also found by where they start, and a subscriber at
// that offset (with the same view and record bound) takes the push another
// one read, once the cache shows it still holds the push's first record.

// maxEncodedPushes bounds the encoded pushes a cluster keeps; their bytes
// are bounded by the cluster's window_bytes. A push still queued for some
// session stays alive there after it is evicted from here.
const maxEncodedPushes = 1024

// encodedPushes keeps the recent encoded pushes of a cluster's windows,
// oldest first out.
type encodedPushes struct {
	mu    sync.Mutex
	byKey map[pushKey]*encodedPush
	order []pushKey
	bytes int
	// byStart holds the pushes of views that do not see every record by
	// where they start.
	byStart map[pushStart]*encodedPush
}

// pushKey names one push.
type pushKey struct {
	first *kgo.Record
	n     int
	next  int64
	view  string // the View.Key of its subscribers
}

// pushStart names the push that a subscriber of a view, with a bound on
// the records of a push, reads at an offset of a partition.
type pushStart struct {
	partition  readerKey
	offset     int64
	view       string
	maxRecords int
}

// encodedPush is one push, encoded by the first subscriber that needs it.
type encodedPush struct {
	once sync.Once
	e    *pubsub.EncodedReply // nil when the view sees none of the records
	err  error
	// records is the number of records e carries.
	records int
	// next is the offset the push goes on at.
	next int64
	// first is the first record read for the push.
	first *kgo.Record
	// Guarded by encodedPushes.mu: what it counts in encodedPushes.bytes,
	// and where it starts if it is in encodedPushes.byStart.
	bytes int
	start *pushStart
}

// encode returns the push of the records of out (at least one), read from
// offset from, that view sees, encoding it on first use and keeping at
// most maxEncodedPushes of maxBytes in all. Its reply is nil when view sees
// none of the records.
func (p *encodedPushes) encode(topic string, partition int32, from int64, out *reply, view keyedView, maxBytes int) (*encodedPush, error) {
	key := pushKey{out.records[0], len(out.records), out.next, view.key}
	p.mu.Lock()
	ep := p.byKey[key]
	if ep == nil {
		ep = &encodedPush{next: out.next, first: key.first}
		if p.byKey == nil {
			p.byKey = make(map[pushKey]*encodedPush)
		}
		p.byKey[key] = ep
		p.order = append(p.order, key)
	}
	p.mu.Unlock()
	ep.once.Do(func() {
		recs := out.records
		if !view.All() {
			recs = visibleOf(view.View, recs)
		}
		if len(recs) > 0 {
			var body recordsReply
			if ep.err = body.set(topic, partition, recs, out.next); ep.err == nil {
				ep.e = pubsub.EncodeBody(&body)
				ep.records = len(recs)
			}
		}
		if ep.err != nil {
			return
		}
		var start *pushStart
		if !view.All() {
			start = &pushStart{readerKey{topic, partition}, from, view.key, out.maxRecords}
		}
		p.added(key, ep, start, maxBytes)
	})
	return ep, ep.err
}

// startingAt returns the push of a view that does not see every record,
// kept here, that starts where s says, or nil. Its first record must still
// be the cache's at s.offset before it is pushed.
func (p *encodedPushes) startingAt(s pushStart) *encodedPush {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byStart[s]
}

// added counts the bytes of ep, just encoded (or found to hold no record
// of its view), files it under start when that is set, and evicts the
// oldest pushes beyond the bounds. A push evicted while it was encoded is
// not counted: it is no longer kept here.
func (p *encodedPushes) added(key pushKey, ep *encodedPush, start *pushStart, maxBytes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byKey[key] != ep {
		return
	}
	if ep.e != nil {
		ep.bytes = ep.e.Len()
	}
	p.bytes += ep.bytes
	if start != nil {
		if p.byStart == nil {
			p.byStart = make(map[pushStart]*encodedPush)
		}
		p.byStart[*start] = ep
		ep.start = start
	}
	for len(p.order) > 1 && (len(p.order) > maxEncodedPushes || p.bytes > maxBytes) {
		old := p.byKey[p.order[0]]
		delete(p.byKey, p.order[0])
		p.order[0] = pushKey{}
		p.order = p.order[1:]
		p.bytes -= old.bytes
		if old.start != nil && p.byStart[*old.start] == old {
			delete(p.byStart, *old.start)
		}
	}
}
