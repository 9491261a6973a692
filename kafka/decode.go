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
// decoding again.

var decompressor = kgo.DefaultDecompressor()

// Offsets within a record batch's header (v2, the only kind Kafka writes
// since 0.11; older message sets are decoded too, as franz-go does).
const (
	batchBaseOffsetAt = 0  // int64: the offset of the batch's first record
	batchLengthAt     = 8  // int32: the bytes after this field
	batchMagicAt      = 16 // int8
	batchAttributesAt = 21 // int16, low 3 bits: compression codec
	batchHeaderBytes  = 23
)

// decodeFetched decodes the batches of one fetch answer from offset on into
// the cache and adds their data records to out, then keeps decoding until
// the read-ahead (maxBytes more) is decoded too or the answer ends. The
// answer proves that [offset, end of its last whole batch) holds exactly
// the records decoded: Kafka returns the log from offset on, and batch
// metadata covers the offsets whose records were compacted away, control
// records and aborted transactions. It reports an error only when the
// first batch cannot be decoded.
func (k *Cluster) decodeFetched(key readerKey, topicID [16]byte, rp *kmsg.FetchResponseTopicPartition, offset int64, out *reply) error {
	aborted := slices.Clone(rp.AbortedTransactions)
	slices.SortFunc(aborted, func(a, b kmsg.FetchResponseTopicPartitionAbortedTransaction) int {
		return int(min(max(a.FirstOffset-b.FirstOffset, -1), 1))
	})
	in, at, ahead := rp.RecordBatches, offset, 0
	var runs []run
	defer func() { k.cache.insert(key, topicID, runs...) }()
	for len(in) > batchHeaderBytes && ahead < out.maxBytes {
		length := int(int32(binary.BigEndian.Uint32(in[batchLengthAt:]))) + batchLengthAt + 4
		if length <= batchHeaderBytes || length > len(in) {
			break // a partial batch ends the answer
		}
		raw := in[:length:length]
		in = in[length:]
		if raw[batchMagicAt] == 2 && binary.BigEndian.Uint16(raw[batchAttributesAt:])&0x7 == 0 {
			// Records of an uncompressed batch point into it: a copy
			// keeps the rest of the answer from staying in memory.
			raw = bytes.Clone(raw)
		}
		from := at
		if at == offset && raw[batchMagicAt] == 2 {
			// The first batch may begin before offset; it is decoded
			// whole anyway, and caching it from its first offset serves
			// the sessions a little behind this one (within the log).
			base := int64(binary.BigEndian.Uint64(raw[batchBaseOffsetAt:]))
			from = min(max(base, rp.LogStartOffset), at)
		}
		one := kmsg.FetchResponseTopicPartition{Partition: key.partition, RecordBatches: raw, AbortedTransactions: aborted}
		fp, end := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			KeepControlRecords: true, // their offsets prove the run; they are not delivered
			Offset:             from,
			IsolationLevel:     kgo.ReadCommitted(),
			Topic:              key.topic,
			Partition:          key.partition,
		}, &one, decompressor, nil)
		if fp.Err != nil {
			if at == offset {
				return fp.Err
			}
			break // serve what decoded; the next fetch reports it
		}
		if end <= at {
			continue // a batch wholly before offset
		}
		data := fp.Records
		if slices.ContainsFunc(data, isControl) {
			for _, r := range data {
				if isControl(r) && len(r.Key) >= 4 && r.Key[2] == 0 && r.Key[3] == 0 {
					aborted = closeAborted(aborted, r.ProducerID, r.Offset)
				}
			}
			data = slices.DeleteFunc(data, isControl)
		}
		runs = append(runs, run{from, end, data})
		for _, r := range data {
			if r.Offset < at {
				continue // cached for others, before this reply
			}
			if !out.add(r) {
				ahead += recordBytes(r)
			}
		}
		out.through(end)
		at = end
	}
	return nil
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
