package kafka

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// messagesOf converts records to protocol messages in a slab of their own
// (keys, values and headers are shared, not copied).
func messagesOf(records []*kgo.Record) []*pb.KafkaMessage {
	return new(messageSlab).messagesOf(records)
}

// messageSlab holds the protocol messages of one reply in a few slices that
// can be reused for the next reply once this one is written.
type messageSlab struct {
	records    []*kgo.Record // the reply's records, while it is built
	msgs       []*pb.KafkaMessage
	backing    []pb.KafkaMessage
	headerPtrs []*pb.KafkaHeader
	headers    []pb.KafkaHeader
}

// messagesOf converts records to protocol messages in s, growing its slices
// when they are too short (keys, values and headers are shared, not copied).
func (s *messageSlab) messagesOf(records []*kgo.Record) []*pb.KafkaMessage {
	headers := 0
	for _, r := range records {
		headers += len(r.Headers)
	}
	s.msgs = resize(s.msgs, len(records))
	s.backing = resize(s.backing, len(records))
	s.headerPtrs = resize(s.headerPtrs, headers)
	s.headers = resize(s.headers, headers)
	headers = 0
	for i, r := range records {
		m := &s.backing[i]
		m.Offset = r.Offset
		m.Timestamp = r.Timestamp.UnixMilli()
		m.Key = r.Key
		m.Value = r.Value
		if n := len(r.Headers); n > 0 {
			m.Headers = s.headerPtrs[headers : headers+n : headers+n]
			for j, h := range r.Headers {
				hs := &s.headers[headers+j]
				hs.Key, hs.Value = h.Key, h.Value
				m.Headers[j] = hs
			}
			headers += n
		}
		s.msgs[i] = m
	}
	return s.msgs
}

// resize returns s with length n, reallocated only when it is too short.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// recordsBytes is the size of recs' keys, values and headers.
func recordsBytes(recs []*kgo.Record) int {
	n := 0
	for _, r := range recs {
		n += recordBytes(r)
	}
	return n
}

// A full fetch of small records builds thousands of protocol messages. The
// fetch handler takes them from a pool and gives them back once its reply is
// written (pubsub.Request.AfterReply), instead of leaving a few megabytes to
// the garbage collector per fetch. The records themselves stay in the
// record cache, where other sessions read them too.

// messageSlabs pools the message slabs of fetch replies.
var messageSlabs = sync.Pool{New: func() any { return new(messageSlab) }}

// release clears the slab, so that it holds on to no record's bytes, and
// puts it back into messageSlabs. The messages it held must no longer be
// read.
func (s *messageSlab) release() {
	clear(s.records)
	s.records = s.records[:0]
	clear(s.backing)
	clear(s.headers)
	messageSlabs.Put(s)
}
