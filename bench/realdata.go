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

// RealDataRun is one partition of JSON events compressed with one codec,
// read from its start by as many direct consumers as sessions.
type RealDataRun struct {
	Codec   string `json:"codec"`
	Records int    `json:"records"`
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

// produceEvents writes n JSON events to partition 0 of topic with a
// franz-go producer configured as applications leave it (10 ms linger,
// 1 MB batches) except for its batch compression, and returns what the
// producer reported of its batches.
func produceEvents(ctx context.Context, brokers []string, topic, codec string, n int) (RealDataRun, error) {
	run := RealDataRun{Codec: codec, Records: n}
	events := newEventSource(1)
	var valueBytes int64
	batches := &batchCounter{}
	err := produceRecords(ctx, brokers, topic, n, func(int) *kgo.Record {
		v := events.next()
		valueBytes += int64(len(v))
		return &kgo.Record{Value: v}
	}, kgo.ProducerBatchCompression(Codecs[codec]), kgo.WithHooks(batches))
	run.ValueBytes = float64(valueBytes) / float64(max(n, 1))
	run.BatchBytes, run.CompressedBytes = batches.uncompressed.Load(), batches.compressed.Load()
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

// measureRealData fills one partition per codec with JSON events and reads
// it, for each reader count, with as many direct consumers and as many
// gateway sessions, in rounds as measureThroughput does.
func measureRealData(ctx context.Context, g *gatewayProcess, brokers []string, cfg Config, logf func(string, ...any)) ([]RealDataRun, error) {
	var runs []RealDataRun
	for _, codec := range cfg.Codecs {
		topic := realDataTopic(codec)
		n := max(1, int(cfg.EventMB*1e6/approxEventBytes))
		logf("real data, %s: producing %d JSON events", codec, n)
		run, err := produceEvents(ctx, brokers, topic, codec, n)
		if err != nil {
			return runs, err
		}
		logf("real data, %s: %.0f B per event, batches %.1f MB, compressed %.1f MB", codec, run.ValueBytes, float64(run.BatchBytes)/1e6, float64(run.CompressedBytes)/1e6)
		direct := make([]time.Duration, len(cfg.SharedSessions))
		gateway := make([]time.Duration, len(cfg.SharedSessions))
		run.Rows = make([]SharedRow, len(cfg.SharedSessions))
		for round := range max(cfg.Runs, 1) {
			for i, readers := range cfg.SharedSessions {
				d, err := readDirect(ctx, brokers, topic, 1, n, readers, isJSONObject)
				if err != nil {
					return runs, fmt.Errorf("%s, %d direct consumers: %w", codec, readers, err)
				}
				if round == 0 || d < direct[i] {
					direct[i] = d
				}
				var took time.Duration
				cost, fetchBytes, err := g.measureCost(func() (int64, error) {
					took, err = readGateway(ctx, g.target, topic, 1, n, readers, everyPartition, isJSONObject)
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
			}
		}
		for i, readers := range cfg.SharedSessions {
			r := &run.Rows[i]
			r.Readers = readers
			r.DirectPerS = float64(readers*n) / direct[i].Seconds()
			r.GatewayPerS = float64(readers*n) / gateway[i].Seconds()
			r.OfDirect = r.GatewayPerS / r.DirectPerS
			logf("real data, %s, %d readers: direct %.0f records/s, gateway %.0f records/s (%.0f%%), %.2f us gateway CPU per record",
				codec, readers, r.DirectPerS, r.GatewayPerS, 100*r.OfDirect, r.Cost.CPUPerRecord)
		}
		runs = append(runs, run)
	}
	return runs, nil
}

// approxEventBytes is about the mean size of a generated event, to turn
// megabytes into a record count.
const approxEventBytes = 450

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
