package kafka

import (
	"bytes"
	"encoding/binary"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record batches of a fetch answer are decoded one by one, and only as far
// as the reply and a read-ahead of the same size need: a broker answers
// fetch_max_bytes of compressed batches, which may hold many times that
// once decoded. Every decoded batch goes into the record cache, so the next
// fetch at last + 1, from any session, is served without asking Kafka or
// decoding again. The read-ahead is decoded in the background while the
// reply travels, as a consumer decodes one fetch while it waits for the
// next; the next fetch waits for it rather than asking Kafka.

// readAheadSlots bounds the broker answers a Cluster decodes in the
// background at once; each holds at most fetch_max_bytes of answer and
// decodes at most fetch_max_bytes of records into the (bounded) cache.
// Without a free slot the read-ahead is decoded before the reply goes.
const readAheadSlots = 4

// Offsets within a record batch's header (v2, the only kind Kafka writes
// since 0.11; older message sets are decoded too, as franz-go does).
const (
	batchBaseOffsetAt = 0  // int64: the offset of the batch's first record
	batchLengthAt     = 8  // int32: the bytes after this field
	batchMagicAt      = 16 // int8
	batchAttributesAt = 21 // int16, low 3 bits: compression codec
	batchHeaderBytes  = 23
)

// batchDecoder decodes the record batches of one fetch answer in order.
// The answer proves that [offset, end of its last whole batch) holds
// exactly the records decoded: Kafka returns the log from offset on, and
// batch metadata covers the offsets whose records were compacted away,
// control records and aborted transactions.
type batchDecoder struct {
	key          readerKey
	decompressor kgo.Decompressor
	in           []byte // the batches not decoded yet
	offset       int64  // the offset the answer was asked for
	at           int64  // the first offset not decoded yet
	logStart     int64
	aborted      []kmsg.FetchResponseTopicPartitionAbortedTransaction // ordered by first offset
	// packed: runs are packed for a fetch loop's packed replies.
	packed bool
}

func newBatchDecoder(key readerKey, d kgo.Decompressor, rp *kmsg.FetchResponseTopicPartition, offset int64, packed bool) *batchDecoder {
	aborted := slices.Clone(rp.AbortedTransactions)
	slices.SortFunc(aborted, func(a, b kmsg.FetchResponseTopicPartitionAbortedTransaction) int {
		return int(min(max(a.FirstOffset-b.FirstOffset, -1), 1))
	})
	return &batchDecoder{key: key, decompressor: d, in: rp.RecordBatches, offset: offset, at: offset, logStart: rp.LogStartOffset, aborted: aborted, packed: packed}
}

// next decodes the next batch that ends after the decoded offsets into a
// run of its data records, packed when d is; ok is false at the end of the
// answer (a partial batch ends it).
func (d *batchDecoder) next() (r run, ok bool, err error) {
	for len(d.in) > batchHeaderBytes {
		length := int(int32(binary.BigEndian.Uint32(d.in[batchLengthAt:]))) + batchLengthAt + 4
		if length <= batchHeaderBytes || length > len(d.in) {
			break
		}
		raw := d.in[:length:length]
		d.in = d.in[length:]
		// Records of an uncompressed batch point into it; packing copies
		// them, and records kept go by a copy too, which keeps the rest of
		// the answer from staying in memory.
		pointsIn := raw[batchMagicAt] == 2 && binary.BigEndian.Uint16(raw[batchAttributesAt:])&0x7 == 0
		if pointsIn && !d.packed {
			raw = bytes.Clone(raw)
		}
		from := d.at
		if d.at == d.offset && raw[batchMagicAt] == 2 {
			// The first batch may begin before offset; it is decoded
			// whole anyway, and caching it from its first offset serves
			// the sessions a little behind this one (within the log).
			base := int64(binary.BigEndian.Uint64(raw[batchBaseOffsetAt:]))
			from = min(max(base, d.logStart), d.at)
		}
		one := kmsg.FetchResponseTopicPartition{Partition: d.key.partition, RecordBatches: raw, AbortedTransactions: d.aborted}
		fp, end := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			KeepControlRecords: true, // their offsets prove the run; they are not delivered
			Offset:             from,
			IsolationLevel:     kgo.ReadCommitted(),
			Topic:              d.key.topic,
			Partition:          d.key.partition,
		}, &one, d.decompressor, nil)
		if fp.Err != nil {
			d.in = nil
			return run{}, false, fp.Err
		}
		if end <= d.at {
			continue // a batch wholly before offset
		}
		data := fp.Records
		if slices.ContainsFunc(data, isControl) {
			for _, r := range data {
				if isControl(r) && len(r.Key) >= 4 && r.Key[2] == 0 && r.Key[3] == 0 {
					d.aborted = closeAborted(d.aborted, r.ProducerID, r.Offset)
				}
			}
			data = slices.DeleteFunc(data, isControl)
		}
		d.at = end
		r := run{first: from, next: end, records: data}
		if d.packed {
			if r = r.pack(); r.records != nil && pointsIn {
				r.records = compactRecords(r.records)
			}
		}
		return r, true, nil
	}
	d.in = nil
	return run{}, false, nil
}

// decodeFetched decodes the batches of one fetch answer from offset on into
// the cache and adds their data records to out; the read-ahead (maxBytes
// more of records) follows in the background, or at once when no slot is
// free. It reports an error only when the first batch cannot be decoded.
func (k *Cluster) decodeFetched(key cacheKey, epoch int32, rp *kmsg.FetchResponseTopicPartition, offset int64, out *reply) error {
	d := newBatchDecoder(key.readerKey, k.decompressor, rp, offset, out.packed)
	var runs []run
	ahead := 0
	for !out.full {
		r, ok, err := d.next()
		if err != nil && len(runs) == 0 {
			return err
		}
		if !ok {
			break // the end, or a batch that failed: the next fetch reports it
		}
		runs = append(runs, r)
		if !out.packed {
			for _, rec := range r.records {
				if rec.Offset < offset {
					continue // cached for others, before this reply
				}
				if !out.add(rec) {
					ahead += recordBytes(rec)
				}
			}
		} else if j := out.addPacked(r.packed, r.packed.search(offset)); r.records != nil && j == r.packed.len() && !out.full {
			// A record the reply cannot carry packed ends it.
			out.unpackable = out.n == 0
			break
		} else {
			ahead += r.packed.bytesFrom(j)
		}
		out.through(r.next)
	}
	// The reader reads on where its reply ends: the runs before are
	// behind it.
	k.cache.reading(key, out)
	k.cache.insert(key, epoch, runs...)
	if len(d.in) == 0 || ahead >= out.maxBytes || out.unpackable {
		return nil
	}
	select {
	case k.readAheads <- struct{}{}:
	default:
		k.decodeAhead(d, key, epoch, out.maxBytes-ahead) // no slot: before the reply
		return nil
	}
	if _, first := k.fetching.begin(key.readerKey, d.at); !first {
		<-k.readAheads // a fetch of those offsets runs already
		return nil
	}
	at, budget := d.at, out.maxBytes-ahead
	go func() {
		defer func() { <-k.readAheads }()
		defer k.fetching.end(key.readerKey, at)
		defer k.pool.recoverPanic("decoding ahead")
		k.decodeAhead(d, key, epoch, budget)
	}()
	return nil
}

// decodeAhead decodes the rest of d, up to maxBytes of data records, into
// the record cache.
func (k *Cluster) decodeAhead(d *batchDecoder, key cacheKey, epoch int32, maxBytes int) {
	var runs []run
	for n := 0; n < maxBytes; {
		r, ok, _ := d.next()
		if !ok {
			break
		}
		runs = append(runs, r)
		if r.records == nil {
			n += r.packed.bytesFrom(0)
		} else {
			n += recordsBytes(r.records)
		}
	}
	k.cache.insert(key, epoch, runs...)
}

// closeAborted removes the aborted transaction of producer pid that an abort
// marker at offset ends (its earliest open one), so that the producer's
// later batches are not taken for aborted ones. aborted is ordered by first
// offset.
func closeAborted(aborted []kmsg.FetchResponseTopicPartitionAbortedTransaction, pid, offset int64) []kmsg.FetchResponseTopicPartitionAbortedTransaction {
	for i, a := range aborted {
		if a.ProducerID == pid && a.FirstOffset <= offset {
			return slices.Delete(aborted, i, i+1)
		}
	}
	return aborted
}
