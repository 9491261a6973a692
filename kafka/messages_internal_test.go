package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// messageReply builds a reply of records the way the gateway did before it
// encoded them itself: one KafkaMessage per record, sharing its key, value
// and headers, marshalled by proto. It is the reference recordsReply must
// match byte for byte, and the old way of BenchmarkEncodeRecordsReply; its
// slices are reused from one reply to the next, as the old code's were.
type messageReply struct {
	backing    []pb.KafkaMessage
	msgs       []*pb.KafkaMessage
	headers    []pb.KafkaHeader
	headerPtrs []*pb.KafkaHeader
}

// of returns the PubSubResp of records of topic/partition going on at next.
func (m *messageReply) of(topic string, partition int32, records []*kgo.Record, next int64) *pb.PubSubResp {
	n := 0
	for _, r := range records {
		n += len(r.Headers)
	}
	m.backing, m.msgs = resize(m.backing, len(records)), resize(m.msgs, len(records))
	m.headers, m.headerPtrs = resize(m.headers, n), resize(m.headerPtrs, n)
	clear(m.backing)
	n = 0
	for i, r := range records {
		msg := &m.backing[i]
		msg.Offset, msg.Timestamp, msg.Key, msg.Value = r.Offset, r.Timestamp.UnixMilli(), r.Key, r.Value
		if len(r.Headers) > 0 {
			msg.Headers = m.headerPtrs[n : n+len(r.Headers)]
			for j, h := range r.Headers {
				m.headers[n+j].Key, m.headers[n+j].Value = h.Key, h.Value
				msg.Headers[j] = &m.headers[n+j]
			}
			n += len(r.Headers)
		}
		m.msgs[i] = msg
	}
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{
		Messages: m.msgs, Topic: topic, Partition: partition, NextOffset: next,
	}}}
}

// resize returns s with length n, reallocated only when it is too short.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// checkEncoding checks that recordsReply encodes records as proto.Marshal
// encodes the old reply of them, and refuses what proto.Marshal refuses.
func checkEncoding(t *testing.T, topic string, partition int32, records []*kgo.Record, next int64) {
	t.Helper()
	want, wantErr := proto.Marshal(new(messageReply).of(topic, partition, records, next))
	var body recordsReply
	err := body.set(topic, partition, records, next)
	if wantErr != nil || err != nil {
		if wantErr == nil || !errors.Is(err, errNotUTF8) {
			t.Fatalf("proto.Marshal: %v; recordsReply: %v", wantErr, err)
		}
		return
	}
	prefix := []byte{0x08, 0x07} // a sequence: AppendBody appends after it
	got := body.AppendBody(bytes.Clone(prefix))
	if !bytes.Equal(got[:len(prefix)], prefix) || !bytes.Equal(got[len(prefix):], want) {
		t.Fatalf("encoded\n%x\nproto.Marshal\n%x", got[len(prefix):], want)
	}
	if body.BodySize() != len(want) {
		t.Fatalf("BodySize %d, encoded %d bytes", body.BodySize(), len(want))
	}
}

func TestRecordsReplyEncodesAsProtoMarshal(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	big := bytes.Repeat([]byte("v"), 1<<20+3)
	many := make([]*kgo.Record, 300)
	for i := range many {
		many[i] = &kgo.Record{Offset: int64(i) + 1000, Timestamp: at, Value: []byte(strings.Repeat("x", i))}
	}
	for _, tc := range []struct {
		name      string
		topic     string
		partition int32
		records   []*kgo.Record
		next      int64
	}{
		{name: "empty fetch reply"},
		{name: "position push", topic: "t", partition: 3, next: 42},
		{name: "zero record", records: []*kgo.Record{{}}},
		{name: "zero time", records: []*kgo.Record{{Timestamp: time.Time{}}}, next: 1},
		{name: "nil and empty key and value", records: []*kgo.Record{
			{Offset: 1, Timestamp: at, Key: nil, Value: []byte{}},
			{Offset: 2, Timestamp: at, Key: []byte{}, Value: nil},
			{Offset: 3, Timestamp: at, Key: []byte("k"), Value: []byte("v")},
		}, next: 4},
		{name: "headers", topic: "orders", partition: 1, records: []*kgo.Record{
			{Offset: 5, Timestamp: at, Value: []byte(`{"a":1}`), Headers: []kgo.RecordHeader{
				{}, {Key: "k"}, {Key: "k", Value: []byte{}}, {Value: []byte("v")}, {Key: "tenant", Value: []byte("a")},
			}},
			{Offset: 6, Timestamp: at, Headers: []kgo.RecordHeader{{Key: "ü", Value: []byte{0xff}}}},
		}, next: 7},
		{name: "negative and sub-millisecond timestamps", records: []*kgo.Record{
			{Offset: 1, Timestamp: time.UnixMilli(-1)},
			{Offset: 2, Timestamp: time.Unix(0, 1_500_000)},
			{Offset: 3, Timestamp: time.Unix(-1, 999_999)},
		}},
		{name: "big offsets and partition", topic: "t", partition: math.MaxInt32, records: []*kgo.Record{
			{Offset: math.MaxInt64 - 1, Timestamp: time.UnixMilli(math.MaxInt64 / 1000)},
		}, next: math.MaxInt64},
		{name: "negative numbers", topic: "t", partition: -1, records: []*kgo.Record{{Offset: -1}}, next: -1},
		{name: "large value", records: []*kgo.Record{{Offset: 9, Timestamp: at, Key: big[:200], Value: big}}, next: 10},
		{name: "many records", topic: "t", records: many, next: 1300},
		{name: "header key not UTF-8", records: []*kgo.Record{{Offset: 1, Headers: []kgo.RecordHeader{{Key: "\xff"}}}}},
		{name: "topic not UTF-8", topic: "t\xc3", records: []*kgo.Record{{Offset: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkEncoding(t, tc.topic, tc.partition, tc.records, tc.next)
		})
	}
}

// TestRecordsReplyRefusesHeaderKeysNotUTF8: a record proto.Marshal cannot
// carry is refused when the reply is set, naming its offset.
func TestRecordsReplyRefusesHeaderKeysNotUTF8(t *testing.T) {
	var body recordsReply
	err := body.set("", 0, []*kgo.Record{{Offset: 1}, {Offset: 2, Headers: []kgo.RecordHeader{{Key: "a\xffb"}}}}, 3)
	if !errors.Is(err, errNotUTF8) || !strings.Contains(err.Error(), "offset 2") {
		t.Fatalf("got %v, want errNotUTF8 at offset 2", err)
	}
}

// fuzzRecords reads records from data: per record a flag byte, an offset
// and a time (8 bytes each), a key (nil, or a length byte and bytes), a
// value (nil, or a length of 2 bytes and one byte repeated, 64 KiB at most
// in all) and up to 3 headers (a key and a value each, read as the key).
func fuzzRecords(data []byte) []*kgo.Record {
	take := func(n int) []byte {
		n = min(n, len(data))
		b := data[:n]
		data = data[n:]
		return b
	}
	u64 := func() uint64 {
		var b [8]byte
		copy(b[:], take(8))
		return binary.LittleEndian.Uint64(b[:])
	}
	u8 := func() byte {
		if b := take(1); len(b) == 1 {
			return b[0]
		}
		return 0
	}
	field := func() []byte {
		n := u8()
		if n == 0xff {
			return nil
		}
		return take(int(n))
	}
	var recs []*kgo.Record
	values := 64 << 10
	for len(data) > 0 && len(recs) < 100 {
		flags := u8()
		r := &kgo.Record{Offset: int64(u64())}
		switch t := int64(u64()); flags % 3 {
		case 0:
			r.Timestamp = time.UnixMilli(t)
		case 1:
			r.Timestamp = time.Unix(0, t)
		}
		r.Key = field()
		if flags&0x10 != 0 {
			n := min(int(u8())|int(u8())<<8, values)
			values -= n
			r.Value = bytes.Repeat([]byte{u8()}, n)
		}
		for range (flags >> 5) % 4 {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: string(field()), Value: field()})
		}
		recs = append(recs, r)
	}
	return recs
}

// FuzzRecordsReply checks recordsReply against proto.Marshal of the old
// reply of the same records.
func FuzzRecordsReply(f *testing.F) {
	f.Add([]byte{}, "", int32(0), int64(0))
	f.Add([]byte{0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x10, 0x01, 'v'}, "t", int32(2), int64(1))
	f.Add([]byte{0x71, 9, 9, 9, 9, 9, 9, 9, 0x7f, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0xff, 0xff, 0x0f, 'x', 1, 'k', 0, 1, 0xff, 0xff, 2, 'a', 'b'}, "orders", int32(-1), int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, data []byte, topic string, partition int32, next int64) {
		checkEncoding(t, topic, partition, fuzzRecords(data), next)
	})
}

// BenchmarkEncodeRecordsReply encodes a full fetch reply of 8000 records of
// 100 bytes: the old way (a KafkaMessage per record in reused slices,
// marshalled by proto) and straight from the records.
func BenchmarkEncodeRecordsReply(b *testing.B) {
	recs := make([]*kgo.Record, 8000)
	at := time.Now()
	for i := range recs {
		recs[i] = &kgo.Record{Offset: 1_000_000 + int64(i), Timestamp: at, Value: bytes.Repeat([]byte("v"), 100)}
	}
	var buf []byte
	b.Run("messages", func(b *testing.B) {
		var m messageReply
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf[:0], m.of("", 0, recs, 8000)); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("records", func(b *testing.B) {
		var body recordsReply
		b.ReportAllocs()
		for b.Loop() {
			if err := body.set("", 0, recs, 8000); err != nil {
				b.Fatal(err)
			}
			buf = body.AppendBody(buf[:0])
		}
		b.SetBytes(int64(len(buf)))
	})
}
