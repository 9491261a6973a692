package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// A reply of records (a fetch reply, a subscription's push) is encoded
// straight from the records, with no protocol message per record and no
// reflection: recordsReply writes the bytes proto.Marshal writes for the
// PubSubResp whose kafka_fetch_resp holds one KafkaMessage per record
// (offset, timestamp in milliseconds, key, value, headers), fields in
// number order, those of proto3 zero value left out.

// fieldOf returns the number of the field name of m's message, which the
// schema must have.
func fieldOf(m proto.Message, name protoreflect.Name) protowire.Number {
	fd := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if fd == nil {
		panic(fmt.Sprintf("kafka: %s has no field %s", m.ProtoReflect().Descriptor().FullName(), name))
	}
	return fd.Number()
}

// Field numbers of a reply of records, from the generated descriptors.
var (
	fieldFetchResp   = fieldOf(&pb.PubSubResp{}, "kafka_fetch_resp")
	fieldMessages    = fieldOf(&pb.KafkaFetchResp{}, "messages")
	fieldTopic       = fieldOf(&pb.KafkaFetchResp{}, "topic")
	fieldPartition   = fieldOf(&pb.KafkaFetchResp{}, "partition")
	fieldNextOffset  = fieldOf(&pb.KafkaFetchResp{}, "next_offset")
	fieldOffset      = fieldOf(&pb.KafkaMessage{}, "offset")
	fieldTimestamp   = fieldOf(&pb.KafkaMessage{}, "timestamp")
	fieldKey         = fieldOf(&pb.KafkaMessage{}, "key")
	fieldValue       = fieldOf(&pb.KafkaMessage{}, "value")
	fieldHeaders     = fieldOf(&pb.KafkaMessage{}, "headers")
	fieldHeaderKey   = fieldOf(&pb.KafkaHeader{}, "key")
	fieldHeaderValue = fieldOf(&pb.KafkaHeader{}, "value")
	sizeTagMessages  = protowire.SizeTag(fieldMessages)
	sizeTagHeaders   = protowire.SizeTag(fieldHeaders)
	sizeTagFetchResp = protowire.SizeTag(fieldFetchResp)
)

// errNotUTF8 is the cause of a reply that cannot carry a record whose
// header key (a string of the protocol) is not valid UTF-8, which
// proto.Marshal refuses too.
var errNotUTF8 = errors.New("not valid UTF-8")

// recordsReply is a PubSubResp of a kafka_fetch_resp that carries records,
// encoded from them as a pubsub.ReplyBody. Set it with set, which checks
// that it can be encoded; a fetch takes one from recordsReplies and gives
// it back after its reply is written (release), since a full fetch reply
// of small records holds thousands of them.
type recordsReply struct {
	records   []*kgo.Record
	parts     []packedPart // packed records, after records
	topic     string       // left out when empty (a fetch reply)
	partition int32
	next      int64
	// size is that of the kafka_fetch_resp message.
	size int
	// messages are what set measured of each record's KafkaMessage, for
	// AppendBody.
	messages []messageHead
}

// messageHead is what the KafkaMessage of a record starts with: its size
// and its timestamp in milliseconds.
type messageHead struct {
	size      int
	timestamp int64
}

// set makes r the reply of records of topic/partition that goes on at
// next, or fails with errNotUTF8 when it cannot be encoded.
func (r *recordsReply) set(topic string, partition int32, records []*kgo.Record, next int64) error {
	r.parts = r.parts[:0]
	r.records, r.topic, r.partition, r.next = records, topic, partition, next
	if !utf8.ValidString(topic) {
		return fmt.Errorf("topic: %w", errNotUTF8)
	}
	n := sizeLen(fieldTopic, topic) + sizeVarint(fieldPartition, uint64(int64(partition))) + sizeVarint(fieldNextOffset, uint64(next))
	r.messages = slices.Grow(r.messages[:0], len(records))
	for _, rec := range records {
		m, ok := headOf(rec)
		if !ok {
			return fmt.Errorf("record at offset %d: header key: %w", rec.Offset, errNotUTF8)
		}
		r.messages = append(r.messages, m)
		n += sizeTagMessages + protowire.SizeBytes(m.size)
	}
	r.size = n
	return nil
}

// headOf measures the KafkaMessage of rec; ok is false when a reply cannot
// carry rec (a header key that is not UTF-8).
func headOf(rec *kgo.Record) (m messageHead, ok bool) {
	m.timestamp = rec.Timestamp.UnixMilli()
	m.size = sizeVarint(fieldOffset, uint64(rec.Offset)) + sizeVarint(fieldTimestamp, uint64(m.timestamp)) +
		sizeLen(fieldKey, rec.Key) + sizeLen(fieldValue, rec.Value)
	for _, h := range rec.Headers {
		if !utf8.ValidString(h.Key) {
			return m, false
		}
		m.size += sizeTagHeaders + protowire.SizeBytes(headerSize(h))
	}
	return m, true
}

// newReply starts a fetch reply at offset of at most maxBytes, packed or
// by records, which keeps its records (or packed parts) in r's slices:
// r must take them back (set or setPacked) before it is released.
func (r *recordsReply) newReply(offset int64, maxBytes int, packed bool) *reply {
	out := newReply(offset, DefaultMaxRecords, maxBytes)
	out.records, out.parts, out.packed = r.records[:0], r.parts[:0], packed
	return out
}

// setPacked makes r the fetch reply of the packed records of parts that
// goes on at next. Packed records are encodable.
func (r *recordsReply) setPacked(parts []packedPart, next int64) {
	r.records = r.records[:0]
	r.parts, r.next = parts, next
	n := sizeVarint(fieldNextOffset, uint64(next))
	for _, part := range parts {
		n += int(part.p.start(part.j) - part.p.start(part.i))
	}
	r.size = n
}

// BodySize implements pubsub.ReplyBody.
func (r *recordsReply) BodySize() int {
	return sizeTagFetchResp + protowire.SizeBytes(r.size)
}

// AppendBody implements pubsub.ReplyBody.
func (r *recordsReply) AppendBody(b []byte) []byte {
	b = protowire.AppendTag(b, fieldFetchResp, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(r.size))
	for i, rec := range r.records {
		b = appendMessage(b, rec, r.messages[i])
	}
	for _, part := range r.parts {
		b = append(b, part.p.enc[part.p.start(part.i):part.p.start(part.j)]...)
	}
	b = appendString(b, fieldTopic, r.topic)
	b = appendVarint(b, fieldPartition, uint64(int64(r.partition)))
	return appendVarint(b, fieldNextOffset, uint64(r.next))
}

// appendMessage appends rec, of head m, as an entry of a KafkaFetchResp's
// messages: its tag, its length and its KafkaMessage.
func appendMessage(b []byte, rec *kgo.Record, m messageHead) []byte {
	b = protowire.AppendTag(b, fieldMessages, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(m.size))
	b = appendVarint(b, fieldOffset, uint64(rec.Offset))
	b = appendVarint(b, fieldTimestamp, uint64(m.timestamp))
	b = appendBytes(b, fieldKey, rec.Key)
	b = appendBytes(b, fieldValue, rec.Value)
	for _, h := range rec.Headers {
		b = protowire.AppendTag(b, fieldHeaders, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(headerSize(h)))
		b = appendString(b, fieldHeaderKey, h.Key)
		b = appendBytes(b, fieldHeaderValue, h.Value)
	}
	return b
}

// headerSize is the size of the KafkaHeader of h.
func headerSize(h kgo.RecordHeader) int {
	return sizeLen(fieldHeaderKey, h.Key) + sizeLen(fieldHeaderValue, h.Value)
}

// sizeVarint is the size of a varint field of value v (none for 0).
func sizeVarint(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

// sizeLen is the size of a bytes or string field of value s (none when
// empty).
func sizeLen[S string | []byte](num protowire.Number, s S) int {
	if len(s) == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

// appendVarint appends a varint field of value v, unless 0.
func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

// appendBytes appends a bytes field of value v, unless empty.
func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
}

// appendString appends a string field of value v, unless empty.
func appendString(b []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, num, protowire.BytesType), v)
}

// pushRecords pushes records of the delivery's partition, going on at
// next, encoded straight into the session's push queue. It fails as
// pubsub.Request.PushBody does, or when the records cannot be encoded.
func (d *delivery) pushRecords(ctx context.Context, records []*kgo.Record, next int64) error {
	var body recordsReply
	if err := body.set(d.topic, d.partition, records, next); err != nil {
		return err
	}
	return d.req.PushBody(ctx, &body)
}

// recordsBytes is the size of recs' keys, values and headers.
func recordsBytes(recs []*kgo.Record) int {
	n := 0
	for _, r := range recs {
		n += recordBytes(r)
	}
	return n
}

// recordsReplies pools the replies of fetches, with their slices of
// records. The records themselves stay in the record cache, where other
// sessions read them too.
var recordsReplies = sync.Pool{New: func() any { return new(recordsReply) }}

// release clears r, so that it holds on to no record, and puts it back
// into recordsReplies. Its reply must be written by then
// (pubsub.Request.AfterReply).
func (r *recordsReply) release() {
	clear(r.records)
	clear(r.parts)
	*r = recordsReply{records: r.records[:0], messages: r.messages[:0], parts: r.parts[:0]}
	recordsReplies.Put(r)
}
