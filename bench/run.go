package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"
)

// Config says what one benchmark run measures.
type Config struct {
	// ValueSizes are the record value sizes of the throughput runs, bytes.
	ValueSizes []int `json:"value_sizes"`
	// MBPerSize is how many megabytes (10^6 B) of values each throughput
	// run reads; the record count is MBPerSize / size.
	MBPerSize float64 `json:"mb_per_size"`
	// Runs is how many rounds of throughput, real-data and push runs are
	// made, each running every reader once; each reader keeps its fastest
	// round, a real-data ratio to direct is the median of the rounds'
	// ratios, and a push figure the median of the rounds' figures.
	Runs int `json:"runs"`
	// Sessions are the concurrent session counts read through the gateway.
	Sessions []int `json:"sessions"`
	// IdleSessions are the idle session counts whose memory is measured.
	IdleSessions []int `json:"idle_sessions"`
	// LatencySamples is the number of round trips of each latency kind.
	LatencySamples int `json:"latency_samples"`
	// FanoutSessions tail one partition while FanoutRecords arrive.
	FanoutSessions int `json:"fanout_sessions"`
	FanoutRecords  int `json:"fanout_records"`
	// SubscribeSessions subscribe to one partition while SubscribeRecords
	// arrive, one run per count; none skips the subscription runs.
	SubscribeSessions []int `json:"subscribe_sessions"`
	SubscribeRecords  int   `json:"subscribe_records"`
	// Codecs are the batch compressions of the real-data runs (keys of
	// Codecs); none skips them.
	Codecs []string `json:"codecs"`
	// EventMB is how many megabytes (10^6 B) of JSON events each codec's
	// partition holds.
	EventMB float64 `json:"event_mb"`
	// EventBytes chooses the events by their approximate size:
	// SmallEventBytes (compact events) or LargeEventBytes (0 too: the
	// events of earlier runs, with nested objects and free text).
	EventBytes int `json:"event_bytes,omitempty"`
	// SharedSessions are the reader counts of the real-data runs: as many
	// direct consumers, then as many gateway sessions, each read the whole
	// partition.
	SharedSessions []int `json:"shared_sessions"`
	// PushSessions are the subscriber counts of the push latency runs, in
	// which PushRecords JSON events arrive at PushRate records/s; none
	// skips them.
	PushSessions []int   `json:"push_sessions"`
	PushRecords  int     `json:"push_records"`
	PushRate     float64 `json:"push_rate"`
	// Client is the client of the throughput and real-data sessions:
	// ClientProto (the default, also ""), ClientRaw or ClientGo.
	Client string `json:"client"`
	// CacheBytes and WindowBytes, if not 0, set the gateway cluster's
	// record cache bounds (cache_bytes, window_bytes); 0 keeps the defaults.
	CacheBytes  int `json:"cache_bytes,omitempty"`
	WindowBytes int `json:"window_bytes,omitempty"`
	// CPUProfile and MemProfile, if set, receive the gateway process's
	// CPU profile and heap (allocs) profile.
	CPUProfile string `json:"-"`
	MemProfile string `json:"-"`
}

// Results are the figures of one run.
type Results struct {
	Started time.Time `json:"started"`
	// Merged is the number of runs Best combined into these results (0 for
	// a single run).
	Merged     int             `json:"merged,omitempty"`
	Machine    Machine         `json:"machine"`
	Config     Config          `json:"config"`
	Throughput []ThroughputRow `json:"throughput"`
	Latency    LatencyResult   `json:"latency"`
	Fanout     FanoutResult    `json:"fanout"`
	Subscribe  SubscribeResult `json:"subscribe"`
	Sessions   SessionsResult  `json:"sessions"`
	// RealData are the JSON-event runs, one per codec.
	RealData []RealDataRun `json:"real_data,omitempty"`
	// Push are the push latency runs, one per subscriber count.
	Push []PushRow `json:"push,omitempty"`
}

// Topics of a run besides the throughput topics, one partition each.
const (
	latencyTopic   = "latency"
	fanoutTopic    = "fanout"
	subscribeTopic = "subscribe"
	pushTopic      = "push"
)

func valuesTopic(size int) string { return "values-" + strconv.Itoa(size) }

// Run measures everything cfg asks for, logging progress to progress.
func Run(ctx context.Context, cfg Config, progress io.Writer) (res Results, err error) {
	res = Results{Started: time.Now().UTC(), Machine: describeMachine(), Config: cfg}
	logf := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	if _, err := raiseOpenFiles(maxOpenFiles); err != nil {
		return res, err
	}
	topics := []string{latencyTopic + ":1", fanoutTopic + ":1", subscribeTopic + ":1", pushTopic + ":1"}
	for _, codec := range cfg.Codecs {
		topics = append(topics, fmt.Sprintf("%s:%d", realDataTopic(codec), realDataPartitions(cfg)))
	}
	for _, size := range cfg.ValueSizes {
		topics = append(topics, fmt.Sprintf("%s:%d", valuesTopic(size), slices.Max(cfg.Sessions)))
	}
	broker, brokers, err := startBroker(topics)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, broker.stop()) }()
	gateway, err := startGateway(brokers, cfg)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, gateway.stop()) }()
	logf("broker %v, gateway %s, %s client", brokers, gateway.target.url, cfg.Client)

	// Idle sessions first, while the gateway's resident memory holds no
	// pages freed by earlier work that new sessions could reuse unseen.
	logf("idle sessions: %v", cfg.IdleSessions)
	if res.Sessions.Steps, res.Sessions.HandshakesPerS, err = measureIdleSessions(ctx, gateway, cfg.IdleSessions, ""); err != nil {
		return res, fmt.Errorf("idle sessions: %w", err)
	}
	logf("idle subscribed sessions: %v", cfg.IdleSessions)
	if res.Sessions.Subscribed, _, err = measureIdleSessions(ctx, gateway, cfg.IdleSessions, subscribeTopic); err != nil {
		return res, fmt.Errorf("idle subscribed sessions: %w", err)
	}

	for _, size := range cfg.ValueSizes {
		rows, err := measureThroughput(ctx, gateway.target, brokers, cfg, size, logf)
		res.Throughput = append(res.Throughput, rows...)
		if err != nil {
			return res, err
		}
	}
	logf("latency: %d samples", cfg.LatencySamples)
	if res.Latency, err = measureLatency(ctx, gateway.target, brokers, latencyTopic, cfg.LatencySamples); err != nil {
		return res, fmt.Errorf("latency: %w", err)
	}
	logf("fan-out: %d sessions, %d records", cfg.FanoutSessions, cfg.FanoutRecords)
	if res.Fanout, err = measureFanout(ctx, gateway, brokers, fanoutTopic, cfg.FanoutSessions, cfg.FanoutRecords, 100); err != nil {
		return res, fmt.Errorf("fan-out: %w", err)
	}
	if len(cfg.SubscribeSessions) > 0 { // none: e.g. code from before subscriptions, as a baseline
		if res.Subscribe, err = measureSubscriptions(ctx, gateway, brokers, subscribeTopic, cfg.LatencySamples, cfg.SubscribeSessions, cfg.SubscribeRecords, logf); err != nil {
			return res, fmt.Errorf("subscriptions: %w", err)
		}
	}
	if res.RealData, err = measureRealData(ctx, gateway, brokers, cfg, logf); err != nil {
		return res, fmt.Errorf("real data: %w", err)
	}
	if res.Push, err = measurePush(ctx, gateway, brokers, pushTopic, cfg, logf); err != nil {
		return res, fmt.Errorf("push latency: %w", err)
	}
	return res, nil
}

// measureThroughput fills the topic of size and reads it directly and
// through the gateway with each session count, in rounds: each round runs
// every reader once, so that a passing load on the machine hits them alike,
// and each reader keeps its fastest round. The topic has as many partitions
// as the largest session count, so that every session reads whole
// partitions (a fetch returns up to its byte limit from its offset on, so
// sessions sharing a partition would read past their share).
func measureThroughput(ctx context.Context, gw gatewayTarget, brokers []string, cfg Config, size int, logf func(string, ...any)) ([]ThroughputRow, error) {
	topic := valuesTopic(size)
	partitions := slices.Max(cfg.Sessions)
	perPartition := max(1, int(cfg.MBPerSize*1e6/float64(size))/partitions)
	n := partitions * perPartition
	logf("%d B: producing %d records over %d partitions", size, n, partitions)
	if err := produce(ctx, brokers, topic, partitions, n, size); err != nil {
		return nil, err
	}
	readers := []func() (time.Duration, error){func() (time.Duration, error) {
		return readDirect(ctx, brokers, topic, partitionRange(0, partitions), perPartition, 1, sizeIs(size))
	}}
	for _, sessions := range cfg.Sessions {
		readers = append(readers, func() (time.Duration, error) {
			return readGateway(ctx, gw, topic, partitionRange(0, partitions), perPartition, sessions, disjointPartitions, sizeIs(size))
		})
	}
	best := make([]time.Duration, len(readers))
	for round := range max(cfg.Runs, 1) {
		for i, read := range readers {
			d, err := read()
			if err != nil {
				return nil, fmt.Errorf("%d B, reader %d: %w", size, i, err)
			}
			if round == 0 || d < best[i] {
				best[i] = d
			}
		}
	}
	rows := []ThroughputRow{newThroughputRow("direct", 0, size, n, best[0])}
	for i, sessions := range cfg.Sessions {
		rows = append(rows, newThroughputRow("gateway", sessions, size, n, best[i+1]))
	}
	logf("%d B, direct: %.0f records/s", size, rows[0].RecordsPerS)
	for i := range rows {
		rows[i].OfDirect = rows[i].RecordsPerS / rows[0].RecordsPerS
		if i > 0 {
			logf("%d B, gateway with %d sessions: %.0f records/s (%.0f%% of direct)", size, rows[i].Sessions, rows[i].RecordsPerS, 100*rows[i].OfDirect)
		}
	}
	return rows, nil
}
