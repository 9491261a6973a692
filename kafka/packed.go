package kafka

import (
	"slices"
	"sort"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protowire"
)

// Records fetched from Kafka are kept in the record cache packed: encoded
// once as the messages of a fetch reply, back to back, with each record's
// offset and where its message ends. A fetch reply that reads them copies
// their bytes into its frame: no object per record is made, marshalled or
// kept, and the garbage collector has no pointer in them to follow, which
// a cache of decoded records (an object of a few hundred bytes per record)
// cost it on every cycle. Readers that need records (subscriptions, views
// that filter) unpack a chunk once; the records point into its bytes.

// packedRecords are records encoded as the KafkaFetchResp.messages entries
// of a reply (each entry its field tag, its length and the KafkaMessage, as
// proto.Marshal writes them), in offset order. It is read-only once made.
type packedRecords struct {
	enc     []byte
	ends    []uint32 // ends[i]: where record i's entry ends in enc
	offsets []int64  // offsets[i]: record i's offset
	sizes   []uint32 // sizes[i]: the bytes of record i's key, value and headers, which reply bounds count
}

// packedOverhead is what a packed record costs besides its entry.
const packedOverhead = int(unsafe.Sizeof(uint32(0))*2 + unsafe.Sizeof(int64(0)))

// packRecords packs recs, up to the first record that cannot be carried
// by a reply (a header key that is not UTF-8, which the protocol's string
// refuses): it returns how many it packed.
func packRecords(recs []*kgo.Record) (*packedRecords, int) {
	heads := make([]messageHead, 0, len(recs))
	n := 0
	for _, r := range recs {
		m, ok := headOf(r)
		if !ok {
			break
		}
		heads = append(heads, m)
		n += sizeTagMessages + protowire.SizeBytes(m.size)
	}
	p := &packedRecords{
		enc:     make([]byte, 0, n),
		ends:    make([]uint32, 0, len(heads)),
		offsets: make([]int64, 0, len(heads)),
		sizes:   make([]uint32, 0, len(heads)),
	}
	for i, m := range heads {
		r := recs[i]
		p.enc = appendMessage(p.enc, r, m)
		p.ends = append(p.ends, uint32(len(p.enc)))
		p.offsets = append(p.offsets, r.Offset)
		p.sizes = append(p.sizes, uint32(recordBytes(r)))
	}
	return p, len(p.offsets)
}

// len returns the number of records of p (none when p is nil).
func (p *packedRecords) len() int {
	if p == nil {
		return 0
	}
	return len(p.offsets)
}

// start returns where record i's entry starts in p.enc.
func (p *packedRecords) start(i int) uint32 {
	if i == 0 {
		return 0
	}
	return p.ends[i-1]
}

// search returns the index of the first record of p at or after offset.
func (p *packedRecords) search(offset int64) int {
	if p == nil {
		return 0
	}
	return sort.Search(len(p.offsets), func(i int) bool { return p.offsets[i] >= offset })
}

// bytesFrom returns the bytes of the keys, values and headers of the
// records of p from index i on.
func (p *packedRecords) bytesFrom(i int) int {
	n := 0
	for _, size := range p.sizes[i:] {
		n += int(size)
	}
	return n
}

// cost is what p counts in the cache.
func (p *packedRecords) cost() int {
	if p == nil {
		return 0
	}
	return len(p.enc) + len(p.offsets)*packedOverhead
}

// slice returns a copy of records [i, j) of p, which pins none of p's
// memory.
func (p *packedRecords) slice(i, j int) *packedRecords {
	from, to := p.start(i), p.start(j)
	q := &packedRecords{
		enc:     slices.Clone(p.enc[from:to]),
		ends:    make([]uint32, j-i),
		offsets: slices.Clone(p.offsets[i:j]),
		sizes:   slices.Clone(p.sizes[i:j]),
	}
	for k := range q.ends {
		q.ends[k] = p.ends[i+k] - from
	}
	return q
}

// unpack returns the records of p, of topic/partition: keys, values and
// header values point into p's bytes, which must not change.
func (p *packedRecords) unpack(topic string, partition int32) []*kgo.Record {
	recs := make([]kgo.Record, len(p.offsets))
	out := make([]*kgo.Record, len(p.offsets))
	for i := range recs {
		r := &recs[i]
		r.Topic, r.Partition, r.Offset = topic, partition, p.offsets[i]
		entry := p.enc[p.start(i):p.ends[i]]
		_, _, n := protowire.ConsumeTag(entry)
		m, _ := protowire.ConsumeBytes(entry[n:])
		unpackMessage(m, r)
		out[i] = r
	}
	return out
}

// unpackMessage sets the timestamp, key, value and headers of r from the
// KafkaMessage m, which appendMessageEntry wrote.
func unpackMessage(m []byte, r *kgo.Record) {
	var ms int64
	for len(m) > 0 {
		num, typ, n := protowire.ConsumeTag(m)
		m = m[n:]
		switch {
		case typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(m)
			m = m[n:]
			if num == fieldTimestamp {
				ms = int64(v)
			}
		case typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(m)
			m = m[n:]
			switch num {
			case fieldKey:
				r.Key = v[:len(v):len(v)]
			case fieldValue:
				r.Value = v[:len(v):len(v)]
			case fieldHeaders:
				r.Headers = append(r.Headers, unpackHeader(v))
			}
		}
	}
	r.Timestamp = time.UnixMilli(ms)
}

// unpackHeader decodes a KafkaHeader that appendMessageEntry wrote.
func unpackHeader(h []byte) kgo.RecordHeader {
	var out kgo.RecordHeader
	for len(h) > 0 {
		num, _, n := protowire.ConsumeTag(h)
		h = h[n:]
		v, n := protowire.ConsumeBytes(h)
		h = h[n:]
		if num == fieldHeaderKey {
			out.Key = string(v)
		} else {
			out.Value = v[:len(v):len(v)]
		}
	}
	return out
}
