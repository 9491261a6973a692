package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Codecs names the batch compressions the real-data runs produce with.
var Codecs = map[string]kgo.CompressionCodec{
	"none":   kgo.NoCompression(),
	"gzip":   kgo.GzipCompression(),
	"snappy": kgo.SnappyCompression(),
	"lz4":    kgo.Lz4Compression(),
	"zstd":   kgo.ZstdCompression(),
}

// CodecNames returns the names of Codecs, sorted.
func CodecNames() []string {
	names := make([]string, 0, len(Codecs))
	for name := range Codecs {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// RealDataRun is JSON events compressed with one codec, read from the start
// of a partition by as many direct consumers as sessions. Each reader count
// of each round reads a partition of its own holding the same events, so
// that the gateway meets every partition with nothing of it cached.
type RealDataRun struct {
	Codec string `json:"codec"`
	// Records is the number of events in each partition.
	Records int `json:"records"`
	// ValueBytes is the mean size of a value.
	ValueBytes float64 `json:"value_bytes"`
	// BatchBytes and CompressedBytes are the producer's record batches
	// before and after compression, as its batch hook reports them.
	BatchBytes      int64       `json:"batch_bytes"`
	CompressedBytes int64       `json:"compressed_bytes"`
	Rows            []SharedRow `json:"rows"`
}

// SharedRow is N readers each reading the whole partition: N direct
// franz-go consumers against N gateway sessions (the APISIX fetch loop).
type SharedRow struct {
	Readers int `json:"readers"`
	// DirectPerS and GatewayPerS are records delivered per second to all
	// readers together.
	DirectPerS  float64 `json:"direct_records_per_s"`
	GatewayPerS float64 `json:"gateway_records_per_s"`
	OfDirect    float64 `json:"of_direct"`
	// WarmPerS is the gateway's rate when the same number of sessions read
	// the partition again, at once after the first read, and WarmOfDirect
	// its ratio to DirectPerS: what a record cache gives later readers.
	WarmPerS float64 `json:"gateway_warm_records_per_s"`
	// DirectSeconds and GatewaySeconds are how long the fastest read of
	// each lasted: a figure means something only over a read of seconds.
	DirectSeconds  float64 `json:"direct_seconds"`
	GatewaySeconds float64 `json:"gateway_seconds"`
	WarmOfDirect   float64 `json:"warm_of_direct"`
	// FetchBytesPerRecord is the gateway's Kafka fetch response bytes per
	// record it delivered: above the compressed size of a record, the
	// gateway fetched the same batches more than once.
	FetchBytesPerRecord float64 `json:"fetch_bytes_per_delivered_record"`
	// Cost is that of the gateway's fastest round.
	Cost gatewayCost `json:"gateway"`
}

// realDataTopic is the topic of the JSON events compressed with codec.
func realDataTopic(codec string) string { return "events-" + codec }

// isJSONObject accepts the events produced by produceEvents without
// decoding them: the reader costs as little as the gateway's clients.
func isJSONObject(value []byte) error {
	if len(value) < 2 || value[0] != '{' || value[len(value)-1] != '}' {
		return fmt.Errorf("value %.20q is not a JSON object", value)
	}
	return nil
}

// produceEvents writes the same n JSON events to each of partitions of
// topic with a franz-go producer configured as applications leave it
// (10 ms linger, 1 MB batches) except for its batch compression, and
// returns what the producer reported of its batches, per partition.
func produceEvents(ctx context.Context, brokers []string, topic, codec string, n, partitions int, compact bool) (RealDataRun, error) {
	run := RealDataRun{Codec: codec, Records: n}
	events := newEventSource(1)
	values := make([][]byte, n)
	var valueBytes int64
	for i := range values {
		if compact {
			values[i] = events.nextCompact()
		} else {
			values[i] = events.next()
		}
		valueBytes += int64(len(values[i]))
	}
	batches := &batchCounter{}
	err := produceRecords(ctx, brokers, topic, n*partitions, func(i int) *kgo.Record {
		return &kgo.Record{Partition: int32(i / n), Value: values[i%n]}
	}, kgo.ProducerBatchCompression(Codecs[codec]), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.WithHooks(batches))
	run.ValueBytes = float64(valueBytes) / float64(max(n, 1))
	run.BatchBytes = batches.uncompressed.Load() / int64(partitions)
	run.CompressedBytes = batches.compressed.Load() / int64(partitions)
	return run, err
}

// batchCounter is a franz-go hook adding up the sizes of produced batches.
type batchCounter struct {
	uncompressed, compressed atomic.Int64
}

// OnProduceBatchWritten implements kgo.HookProduceBatchWritten.
func (b *batchCounter) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	b.uncompressed.Add(int64(m.UncompressedBytes))
	b.compressed.Add(int64(m.CompressedBytes))
}

// measureRealData fills a topic per codec with JSON events, a partition per
// round and reader count, and reads each partition with as many direct
// consumers and then as many gateway sessions, twice (first read, then
// warm), in rounds as measureThroughput does.
func measureRealData(ctx context.Context, g *gatewayProcess, brokers []string, cfg Config, logf func(string, ...any)) ([]RealDataRun, error) {
	var runs []RealDataRun
	for _, codec := range cfg.Codecs {
		topic := realDataTopic(codec)
		n := max(1, int(cfg.EventMB*1e6/float64(eventBytes(cfg))))
		logf("real data, %s: producing %d JSON events to each of %d partitions", codec, n, realDataPartitions(cfg))
		run, err := produceEvents(ctx, brokers, topic, codec, n, realDataPartitions(cfg), cfg.EventBytes == SmallEventBytes)
		if err != nil {
			return runs, err
		}
		logf("real data, %s: %.0f B per event, batches %.1f MB, compressed %.1f MB", codec, run.ValueBytes, float64(run.BatchBytes)/1e6, float64(run.CompressedBytes)/1e6)
		direct := make([]time.Duration, len(cfg.SharedSessions))
		gateway := make([]time.Duration, len(cfg.SharedSessions))
		warm := make([]time.Duration, len(cfg.SharedSessions))
		run.Rows = make([]SharedRow, len(cfg.SharedSessions))
		for round := range max(cfg.Runs, 1) {
			for i, readers := range cfg.SharedSessions {
				partition := []int32{int32(round*len(cfg.SharedSessions) + i)}
				d, err := readDirect(ctx, brokers, topic, partition, n, readers, isJSONObject)
				if err != nil {
					return runs, fmt.Errorf("%s, %d direct consumers: %w", codec, readers, err)
				}
				if round == 0 || d < direct[i] {
					direct[i] = d
				}
				var took time.Duration
				cost, fetchBytes, err := g.measureCost(func() (int64, error) {
					took, err = readGateway(ctx, g.target, topic, partition, n, readers, everyPartition, isJSONObject)
					return int64(readers * n), err
				})
				if err != nil {
					return runs, fmt.Errorf("%s, %d sessions: %w", codec, readers, err)
				}
				if round == 0 || took < gateway[i] {
					gateway[i] = took
					run.Rows[i].Cost = cost
					run.Rows[i].FetchBytesPerRecord = float64(fetchBytes) / float64(readers*n)
				}
				again, err := readGateway(ctx, g.target, topic, partition, n, readers, everyPartition, isJSONObject)
				if err != nil {
					return runs, fmt.Errorf("%s, %d sessions reading again: %w", codec, readers, err)
				}
				if round == 0 || again < warm[i] {
					warm[i] = again
				}
			}
		}
		for i, readers := range cfg.SharedSessions {
			r := &run.Rows[i]
			r.Readers = readers
			r.DirectPerS = float64(readers*n) / direct[i].Seconds()
			r.GatewayPerS = float64(readers*n) / gateway[i].Seconds()
			r.OfDirect = r.GatewayPerS / r.DirectPerS
			r.WarmPerS = float64(readers*n) / warm[i].Seconds()
			r.WarmOfDirect = r.WarmPerS / r.DirectPerS
			r.DirectSeconds, r.GatewaySeconds = direct[i].Seconds(), gateway[i].Seconds()
			logf("real data, %s, %d readers: direct %.0f records/s (%.2f s), gateway %.0f records/s (%.2f s, %.0f%%), %.2f us gateway CPU per record; read again %.0f records/s (%.0f%%)",
				codec, readers, r.DirectPerS, r.DirectSeconds, r.GatewayPerS, r.GatewaySeconds, 100*r.OfDirect, r.Cost.CPUPerRecord, r.WarmPerS, 100*r.WarmOfDirect)
		}
		runs = append(runs, run)
	}
	return runs, nil
}

// realDataPartitions is the number of partitions of each codec's topic:
// one per round and reader count.
func realDataPartitions(cfg Config) int { return max(cfg.Runs, 1) * len(cfg.SharedSessions) }

// eventBytes is about the mean size of the events cfg asks for, to turn
// megabytes into a record count.
func eventBytes(cfg Config) int {
	if cfg.EventBytes == SmallEventBytes {
		return SmallEventBytes
	}
	return LargeEventBytes
}

// ParseCodecs checks a comma-separated list of names of Codecs.
func ParseCodecs(list string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if _, ok := Codecs[name]; !ok {
			return nil, fmt.Errorf("codec %q: want one of %s", name, strings.Join(CodecNames(), ", "))
		}
		if slices.Contains(out, name) {
			return nil, errors.New("codec " + name + " named twice")
		}
		out = append(out, name)
	}
	return out, nil
}
