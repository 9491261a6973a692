package kafka

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// variedRecords are records of every shape a reply carries: no key, empty
// and large values, headers (an empty key, an empty value, repeated),
// negative, zero and far timestamps, large offsets.
func variedRecords() []*kgo.Record {
	big := bytes.Repeat([]byte("x"), 70000)
	return []*kgo.Record{
		{Offset: 0, Timestamp: time.UnixMilli(0), Value: []byte("v0")},
		{Offset: 1, Timestamp: time.UnixMilli(-5), Key: []byte("k"), Value: []byte{}},
		{Offset: 7, Timestamp: time.UnixMilli(1700000000123), Key: []byte{}, Value: big},
		{Offset: 8, Timestamp: time.UnixMilli(1), Headers: []kgo.RecordHeader{{Key: "", Value: []byte("x")}, {Key: "h", Value: nil}, {Key: "h", Value: []byte("2")}}},
		{Offset: math.MaxInt64 - 1, Timestamp: time.UnixMilli(math.MaxInt64 / 1000), Key: []byte("last"), Value: []byte("v")},
	}
}

// replyBody encodes r's body.
func replyBody(r *recordsReply) []byte {
	b := r.AppendBody(nil)
	if len(b) != r.BodySize() {
		panic(fmt.Sprintf("body of %d bytes, BodySize %d", len(b), r.BodySize()))
	}
	return b
}

// TestPackedRecordsAreWhatARecordsReplyEncodes: a reply of packed records
// is byte for byte the reply encoded from the records (which is what
// proto.Marshal writes, TestRecordsReplyEncodesAsProtoMarshal), whole and
// for any slice; unpacked records carry the same offsets, timestamps,
// keys, values and headers.
func TestPackedRecordsAreWhatARecordsReplyEncodes(t *testing.T) {
	recs := variedRecords()
	p, n := packRecords(recs)
	if n != len(recs) || p.len() != len(recs) {
		t.Fatalf("packed %d of %d records", n, len(recs))
	}
	for i := 0; i <= len(recs); i++ {
		for j := i; j <= len(recs); j++ {
			var want, got recordsReply
			if err := want.set("", 0, recs[i:j], 42); err != nil {
				t.Fatal(err)
			}
			got.setPacked([]packedPart{{p, i, j}}, 42)
			if !bytes.Equal(replyBody(&got), replyBody(&want)) {
				t.Fatalf("records [%d, %d): packed reply differs from the records' reply", i, j)
			}
			s := p.slice(i, j)
			got.setPacked([]packedPart{{s, 0, s.len()}}, 42)
			if !bytes.Equal(replyBody(&got), replyBody(&want)) {
				t.Fatalf("records [%d, %d): the slice's reply differs from the records' reply", i, j)
			}
		}
	}
	for i, r := range p.unpack("t", 3) {
		w := recs[i]
		if r.Topic != "t" || r.Partition != 3 || r.Offset != w.Offset || r.Timestamp.UnixMilli() != w.Timestamp.UnixMilli() ||
			!bytes.Equal(r.Key, w.Key) || !bytes.Equal(r.Value, w.Value) || len(r.Headers) != len(w.Headers) {
			t.Fatalf("record %d unpacked as %+v, want %+v", i, r, w)
		}
		for j, h := range r.Headers {
			if h.Key != w.Headers[j].Key || !bytes.Equal(h.Value, w.Headers[j].Value) {
				t.Fatalf("record %d header %d unpacked as %+v, want %+v", i, j, h, w.Headers[j])
			}
		}
		if recordBytes(r) != int(p.sizes[i]) {
			t.Fatalf("record %d: %d bytes unpacked, %d counted packed", i, recordBytes(r), p.sizes[i])
		}
	}
}

// TestPackingStopsAtARecordAReplyCannotCarry: a header key that is not
// UTF-8 (the protocol's string refuses it) ends the packed records, and
// such a run keeps its records, so that readers by records still get them.
func TestPackingStopsAtARecordAReplyCannotCarry(t *testing.T) {
	recs := records(0, 1, 2, 3)
	recs[2].Headers = []kgo.RecordHeader{{Key: "\xff", Value: []byte("v")}}
	r := run{first: 0, next: 4, records: recs}.pack()
	if r.packed.len() != 2 || len(r.records) != 4 {
		t.Fatalf("packed %d records and kept %d, want 2 packed and the 4 records", r.packed.len(), len(r.records))
	}

	rc := newRecordCache(1<<20, 1<<20)
	rc.insert(p0, unknownEpoch, r)
	out := newReply(0, 1000, 1<<20)
	out.packed = true
	if !rc.read(p0, 0, out) || out.n != 2 || out.next != 2 || out.unpackable {
		t.Fatalf("packed read at 0: %d records, next %d, unpackable %v; want the 2 before the one it cannot carry", out.n, out.next, out.unpackable)
	}
	out = newReply(2, 1000, 1<<20)
	out.packed = true
	if !rc.read(p0, 2, out) || out.n != 0 || !out.unpackable {
		t.Fatalf("packed read at 2: %d records, unpackable %v; want none and unpackable", out.n, out.unpackable)
	}
	if got, next, _ := readAll(rc, p0, 2); !slices.Equal(got, []int64{2, 3}) || next != 4 {
		t.Fatalf("read by records at 2: %v next %d, want [2 3] next 4", got, next)
	}
}

// TestPackedAndRecordReadsAgree inserts random runs, some as the readers'
// consumer hands them (records) and some as fetches pack them, with gaps
// and offsets that hold no data record, and reads at every offset both
// ways with random bounds: both find the same records and the same next
// offset. Each chunk is packed or unpacked once, and the cache counts what
// that made within its bounds once the read is done.
func TestPackedAndRecordReadsAgree(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		rc := newRecordCache(1<<20, 1<<20)
		at := int64(0)
		for range 30 {
			at += int64(rng.IntN(3)) // a gap, sometimes
			n := int64(1 + rng.IntN(8))
			var offs []int64
			for o := at; o < at+n; o++ {
				if rng.IntN(4) > 0 { // else an offset without a data record
					offs = append(offs, o)
				}
			}
			r := run{first: at, next: at + n, records: records(offs...)}
			if rng.IntN(2) == 0 {
				r = r.pack()
			}
			rc.insert(p0, unknownEpoch, r)
			at += n
		}
		for offset := int64(0); offset < at; offset++ {
			maxRecords, maxBytes := 1+rng.IntN(20), 1+rng.IntN(40)
			byRecords := newReply(offset, maxRecords, maxBytes)
			packed := newReply(offset, maxRecords, maxBytes)
			packed.packed = true
			okR, okP := rc.read(p0, offset, byRecords), rc.read(p0, offset, packed)
			var got []int64
			for _, part := range packed.parts {
				got = append(got, part.p.offsets[part.i:part.j]...)
			}
			want := offsetsOf(byRecords.records)
			if okR != okP || !slices.Equal(got, want) || packed.next != byRecords.next || packed.full != byRecords.full ||
				packed.n != len(want) || packed.bytes != byRecords.bytes {
				t.Fatalf("seed %d, read at %d (%d records, %d bytes): packed %v %v next %d full %v; by records %v %v next %d full %v",
					seed, offset, maxRecords, maxBytes, okP, got, packed.next, packed.full, okR, want, byRecords.next, byRecords.full)
			}
		}
		rc.mu.Lock()
		counted := 0
		for _, c := range rc.parts[p0].chunks {
			if c.bytes != c.cost() {
				t.Fatalf("seed %d: chunk [%d, %d) counts %d bytes, costs %d", seed, c.first, c.next, c.bytes, c.cost())
			}
			counted += c.bytes
		}
		if counted != rc.bytes {
			t.Fatalf("seed %d: the chunks count %d bytes, the cache %d", seed, counted, rc.bytes)
		}
		rc.mu.Unlock()
	}
}

// TestAChunkIsPackedAndUnpackedOnce: a chunk read both ways keeps both
// forms, made on first use: later reads get the same packed bytes and the
// same records (subscribers that share a push know it by its first
// record), and the cache's bound holds once the forms are counted.
func TestAChunkIsPackedAndUnpackedOnce(t *testing.T) {
	rc := newRecordCache(1<<20, 1<<20)
	rc.insert(p0, unknownEpoch, run{first: 0, next: 3, records: records(0, 1, 2)})
	rc.insert(p0, unknownEpoch, run{first: 3, next: 6, records: records(3, 4, 5)}.pack())
	before := rc.Bytes()

	read := func(packed bool) *reply {
		out := newReply(0, 1000, 1<<20)
		out.packed = packed
		if !rc.read(p0, 0, out) || out.next != 6 {
			t.Fatalf("read (packed %v) ends at %d, want 6", packed, out.next)
		}
		return out
	}
	p1, p2 := read(true), read(true)
	if len(p1.parts) != 2 || p1.parts[0].p != p2.parts[0].p {
		t.Fatal("a chunk of records was packed again for the second read")
	}
	r1, r2 := read(false), read(false)
	if len(r1.records) != 6 || r1.records[3] != r2.records[3] {
		t.Fatal("a packed chunk was unpacked again for the second read")
	}
	if rc.Bytes() <= before {
		t.Fatalf("the cache counts %d bytes after making both forms, %d before", rc.Bytes(), before)
	}

	small := newRecordCache(1<<20, before+1) // room for one form of each chunk
	small.insert(p0, unknownEpoch, run{first: 0, next: 3, records: records(0, 1, 2)})
	small.insert(p0, unknownEpoch, run{first: 3, next: 6, records: records(3, 4, 5)}.pack())
	out := newReply(0, 1000, 1<<20)
	out.packed = true
	small.read(p0, 0, out)
	if small.Bytes() > before+1 {
		t.Fatalf("the cache counts %d bytes after a read, over its bound of %d", small.Bytes(), before+1)
	}
	if out.n != 6 {
		t.Fatalf("the read that went over the bound got %d records, want all 6", out.n)
	}
}

// recordBatch encodes recs, their offsets from base on, as one record batch
// (magic 2) with a valid CRC, compressed by c (uncompressed when nil).
func recordBatch(base int64, recs []*kgo.Record, c kgo.Compressor) []byte {
	var raw []byte
	for i, r := range recs {
		kr := kmsg.NewRecord()
		kr.OffsetDelta = int32(i)
		kr.Key, kr.Value = r.Key, r.Value
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
		}
		body := kr.AppendTo(nil)
		kr.Length = int32(len(body) - 1) // AppendTo wrote a zero length: one byte
		raw = kr.AppendTo(raw)
	}
	b := kmsg.RecordBatch{
		FirstOffset: base, Magic: 2, LastOffsetDelta: int32(len(recs) - 1),
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
		NumRecords: int32(len(recs)), Records: raw,
	}
	if c != nil {
		var codec kgo.CompressionCodecType
		b.Records, codec = c.Compress(new(bytes.Buffer), raw)
		b.Attributes = int16(codec)
	}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[batchLengthAt:], uint32(len(out)-batchLengthAt-4))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], crc32.MakeTable(crc32.Castagnoli)))
	return out
}

// decodePacked decodes every batch of rp from offset 0 on, as a fetch
// loop's decoder does.
func decodePacked(d kgo.Decompressor, rp *kmsg.FetchResponseTopicPartition) ([]run, error) {
	dec := newBatchDecoder(readerKey{topic: "t"}, d, rp, 0, true)
	var runs []run
	for {
		r, ok, err := dec.next()
		if err != nil || !ok {
			return runs, err
		}
		runs = append(runs, r)
	}
}

// TestPackedDecodingKeepsNothingOfTheAnswer: a fetch loop's decoder packs
// uncompressed batches straight from the broker's answer, without copying
// them first; what it returns, packed or kept as records (a record packing
// cannot carry), holds none of the answer's memory.
func TestPackedDecodingKeepsNothingOfTheAnswer(t *testing.T) {
	first, second := records(0, 1, 2), records(3, 4)
	first[1].Headers = []kgo.RecordHeader{{Key: "\xff", Value: []byte("h")}}
	answer := slices.Concat(recordBatch(0, first, nil), recordBatch(3, second, nil))
	rp := &kmsg.FetchResponseTopicPartition{RecordBatches: answer, HighWatermark: 5}
	runs, err := decodePacked(kgo.DefaultDecompressor(), rp)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || len(runs[0].records) != 3 || runs[0].packed.len() != 1 || runs[1].records != nil || runs[1].packed.len() != 2 {
		t.Fatalf("runs %+v: want 3 records kept and 1 packed, then 2 packed", runs)
	}
	for i := range answer {
		answer[i] = 0xee
	}
	got := slices.Concat(runs[0].records, runs[0].packed.unpack("t", 0), runs[1].packed.unpack("t", 0))
	want := slices.Concat(first, first[:1], second)
	for i, r := range got {
		if r.Offset != want[i].Offset || !bytes.Equal(r.Value, want[i].Value) {
			t.Fatalf("record %d after the answer changed: offset %d value %q, want %d %q", i, r.Offset, r.Value, want[i].Offset, want[i].Value)
		}
	}
	if h := runs[0].records[1].Headers; len(h) != 1 || string(h[0].Value) != "h" {
		t.Fatalf("headers of the record kept after the answer changed: %+v", h)
	}
}

// BenchmarkDecodePacked decodes a broker answer of 1 MiB of JSON events
// of about 100 B, in batches of 16 KiB, as a fetch loop's decoder does:
// into packed runs.
func BenchmarkDecodePacked(b *testing.B) {
	for _, codec := range []struct {
		name string
		c    kgo.CompressionCodec
	}{{"none", kgo.NoCompression()}, {"snappy", kgo.SnappyCompression()}, {"zstd", kgo.ZstdCompression()}} {
		b.Run(codec.name, func(b *testing.B) {
			var c kgo.Compressor
			if codec.name != "none" {
				var err error
				if c, err = kgo.DefaultCompressor(codec.c); err != nil {
					b.Fatal(err)
				}
			}
			var answer []byte
			n := 0
			for len(answer) < 1<<20 {
				var batch []*kgo.Record
				for size := 0; size < 16<<10; size += len(batch[len(batch)-1].Value) {
					batch = append(batch, &kgo.Record{Value: jsonEvent(n + len(batch))})
				}
				answer = append(answer, recordBatch(int64(n), batch, c)...)
				n += len(batch)
			}
			d := kgo.DefaultDecompressor()
			b.ReportAllocs()
			for b.Loop() {
				runs, err := decodePacked(d, &kmsg.FetchResponseTopicPartition{RecordBatches: answer})
				if err != nil {
					b.Fatal(err)
				}
				got := 0
				for _, r := range runs {
					got += r.packed.len()
				}
				if got != n {
					b.Fatalf("decoded %d records, want %d", got, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		})
	}
}
