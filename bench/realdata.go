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
// franz-go consumers against N gateway sessions (the APISIX fetch loop),
// over the rounds of a run. The rates and durations are those of the
// fastest read of each kind; the ratios to direct are paired per round
// (see sharedRounds) and given as the median over the rounds with the
// smallest and the largest round. With one round all three are its ratio.
type SharedRow struct {
	Readers int `json:"readers"`
	// DirectPerS and GatewayPerS are records delivered per second to all
	// readers together by the fastest direct and gateway read.
	DirectPerS  float64 `json:"direct_records_per_s"`
	GatewayPerS float64 `json:"gateway_records_per_s"`
	// OfDirect is the median over the rounds of the gateway's rate over
	// the direct rate of the same round; OfDirectMin and OfDirectMax are
	// the smallest and largest of those ratios.
	OfDirect    float64 `json:"of_direct"`
	OfDirectMin float64 `json:"of_direct_min"`
	OfDirectMax float64 `json:"of_direct_max"`
	// WarmPerS is the gateway's fastest rate when the same number of
	// sessions read the partition again, at once after the first read: what
	// a record cache gives later readers. WarmOfDirect, WarmOfDirectMin
	// and WarmOfDirectMax are its per-round ratios to the direct rate of
	// the same round, as OfDirect's.
	WarmPerS        float64 `json:"gateway_warm_records_per_s"`
	WarmOfDirect    float64 `json:"warm_of_direct"`
	WarmOfDirectMin float64 `json:"warm_of_direct_min"`
	WarmOfDirectMax float64 `json:"warm_of_direct_max"`
	// DirectSeconds and GatewaySeconds are how long the fastest read of
	// each lasted: a figure means something only over a read of seconds.
	DirectSeconds  float64 `json:"direct_seconds"`
	GatewaySeconds float64 `json:"gateway_seconds"`
	// FetchBytesPerRecord is the gateway's Kafka fetch response bytes per
	// record it delivered in its fastest first read: above the compressed
	// size of a record, the gateway fetched the same batches more than once.
	FetchBytesPerRecord float64 `json:"fetch_bytes_per_delivered_record"`
	// Cost is that of the gateway's fastest first read.
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
// consumers and then, at once after, as many gateway sessions, twice (first
// read, then warm), in rounds as measureThroughput does. Each round's
// gateway reads are set against that round's direct read (sharedRounds).
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
		rounds := make([]sharedRounds, len(cfg.SharedSessions))
		for i, readers := range cfg.SharedSessions {
			rounds[i].deliveries = readers * n
		}
		for round := range max(cfg.Runs, 1) {
			for i, readers := range cfg.SharedSessions {
				partition := []int32{int32(round*len(cfg.SharedSessions) + i)}
				direct, err := readDirect(ctx, brokers, topic, partition, n, readers, isJSONObject)
				if err != nil {
					return runs, fmt.Errorf("%s, %d direct consumers: %w", codec, readers, err)
				}
				var gateway time.Duration
				cost, fetchBytes, err := g.measureCost(func() (int64, error) {
					gateway, err = readGateway(ctx, g.target, topic, partition, n, readers, everyPartition, isJSONObject)
					return int64(readers * n), err
				})
				if err != nil {
					return runs, fmt.Errorf("%s, %d sessions: %w", codec, readers, err)
				}
				warm, err := readGateway(ctx, g.target, topic, partition, n, readers, everyPartition, isJSONObject)
				if err != nil {
					return runs, fmt.Errorf("%s, %d sessions reading again: %w", codec, readers, err)
				}
				rounds[i].add(direct, gateway, warm, cost, fetchBytes)
				logf("real data, %s, %d readers, round %d: direct %.2f s, gateway %.2f s (%.0f%%), read again %.2f s (%.0f%%)",
					codec, readers, round+1, direct.Seconds(), gateway.Seconds(), 100*direct.Seconds()/gateway.Seconds(), warm.Seconds(), 100*direct.Seconds()/warm.Seconds())
			}
		}
		run.Rows = make([]SharedRow, len(cfg.SharedSessions))
		for i, readers := range cfg.SharedSessions {
			r := rounds[i].row(readers)
			run.Rows[i] = r
			logf("real data, %s, %d readers: fastest direct %.0f records/s (%.2f s), fastest gateway %.0f records/s (%.2f s), of direct per round %s, %.2f us gateway CPU per record; read again %.0f records/s, of direct per round %s",
				codec, readers, r.DirectPerS, r.DirectSeconds, r.GatewayPerS, r.GatewaySeconds, percentSpread(r.OfDirect, r.OfDirectMin, r.OfDirectMax), r.Cost.CPUPerRecord, r.WarmPerS, percentSpread(r.WarmOfDirect, r.WarmOfDirectMin, r.WarmOfDirectMax))
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
