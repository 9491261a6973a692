package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// PushRow is the produce-to-client latency of subscribers of one partition
// while JSON events arrive at a steady rate, measured in rounds: each
// round subscribes its sessions anew and times its own records.
type PushRow struct {
	Sessions int     `json:"sessions"`
	Records  int     `json:"records"`
	Rate     float64 `json:"records_per_s"`
	Rounds   int     `json:"rounds"`
	// Latency counts every record at every subscriber, from the producer's
	// send to the subscriber's read, over all rounds.
	Latency Percentiles `json:"latency"`
	// P50, P99 and CPUPerRecord are each round's median and 99th
	// percentile latency (ms) and gateway CPU per delivered record (us):
	// their median over the rounds and their extremes.
	P50          Spread `json:"p50_ms_rounds"`
	P99          Spread `json:"p99_ms_rounds"`
	CPUPerRecord Spread `json:"cpu_us_per_record_rounds"`
	// Cost is the gateway's CPU per delivered record and peak memory over
	// all rounds.
	Cost gatewayCost `json:"gateway"`
}

// Spread is a figure measured once per round: the median over the rounds,
// and the smallest and largest round.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// spreadFigure is the Spread of figures measured once per round.
func spreadFigure(figures []float64) Spread {
	s := spreadOf(figures)
	return Spread{Median: s.median, Min: s.min, Max: s.max}
}

// measurePush runs cfg.Runs rounds of pushLatency for each subscriber
// count.
func measurePush(ctx context.Context, g *gatewayProcess, brokers []string, topic string, cfg Config, logf func(string, ...any)) ([]PushRow, error) {
	var rows []PushRow
	rounds := max(cfg.Runs, 1)
	for _, n := range cfg.PushSessions {
		row := PushRow{Sessions: n, Records: cfg.PushRecords, Rate: cfg.PushRate, Rounds: rounds}
		var all []time.Duration
		var p50, p99, cpu []float64
		var delivered int64
		var cpuTime time.Duration
		for round := range rounds {
			logf("push latency: %d subscribers, round %d: %d records at %.0f/s", n, round+1, cfg.PushRecords, cfg.PushRate)
			ds, cost, err := pushLatency(ctx, g, brokers, topic, n, cfg.PushRecords, cfg.PushRate)
			if err != nil {
				return rows, fmt.Errorf("push latency to %d subscribers: %w", n, err)
			}
			l := percentilesOf(ds)
			all = append(all, ds...)
			p50, p99, cpu = append(p50, l.P50), append(p99, l.P99), append(cpu, cost.CPUPerRecord)
			deliveries := int64(n) * int64(cfg.PushRecords+subscribeWarmup)
			delivered += deliveries
			cpuTime += time.Duration(cost.CPUPerRecord * float64(deliveries) * float64(time.Microsecond))
			row.Cost.PeakRSS = max(row.Cost.PeakRSS, cost.PeakRSS)
			row.Cost.PeakCacheBytes = max(row.Cost.PeakCacheBytes, cost.PeakCacheBytes)
			row.Cost.CacheLimit = max(row.Cost.CacheLimit, cost.CacheLimit)
			logf("push latency: %d subscribers, round %d: p50 %.3f ms, p99 %.3f ms, %.2f us gateway CPU per delivery", n, round+1, l.P50, l.P99, cost.CPUPerRecord)
		}
		row.Latency = percentilesOf(all)
		row.P50, row.P99, row.CPUPerRecord = spreadFigure(p50), spreadFigure(p99), spreadFigure(cpu)
		row.Cost.CPUPerRecord = float64(cpuTime) / float64(time.Microsecond) / float64(delivered)
		logf("push latency: %d subscribers over %d rounds: p50 %s ms, p99 %s ms, %s us gateway CPU per delivery", n, rounds, row.P50.format("%.3f"), row.P99.format("%.3f"), row.CPUPerRecord.format("%.2f"))
		rows = append(rows, row)
	}
	return rows, nil
}

// format renders s as its median, followed by the smallest and largest
// round in brackets when they differ, each with verb.
func (s Spread) format(verb string) string {
	if s.Min == s.Max {
		return fmt.Sprintf(verb, s.Median)
	}
	return fmt.Sprintf(verb+" ("+verb+"–"+verb+")", s.Median, s.Min, s.Max)
}

// pushLatency subscribes sessions to the end of topic while records JSON
// events, each prefixed with its send time, are produced at rate per
// second after subscribeWarmup events that are not timed. It returns the
// latency of every timed record at every subscriber and the gateway's
// cost over all records.
func pushLatency(ctx context.Context, g *gatewayProcess, brokers []string, topic string, sessions, records int, rate float64) ([]time.Duration, gatewayCost, error) {
	clients, end, err := subscribeAtEnd(ctx, g.target.url, topic, sessions)
	defer closeAll(clients)
	if err != nil {
		return nil, gatewayCost{}, err
	}
	total := int64(records + subscribeWarmup)
	var all []time.Duration
	cost, _, err := g.measureCost(func() (int64, error) {
		errs := make(chan error, sessions+1)
		seen := make(chan []time.Duration, sessions)
		for _, c := range clients {
			goSafe(errs, func() error {
				ds := make([]time.Duration, 0, records)
				next := end
				err := c.receivePushes(func(offset int64, value []byte) error {
					if offset != next || len(value) < 8 {
						return fmt.Errorf("offset %d with %d bytes, want offset %d with a send time", offset, len(value), next)
					}
					if offset >= end+subscribeWarmup {
						ds = append(ds, time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(value)))))
					}
					next++
					return nil
				}, func() bool { return next < end+total })
				seen <- ds
				return err
			})
		}
		goSafe(errs, func() error { return produceSteadily(ctx, brokers, topic, int(total), rate) })
		var err error
		for range sessions + 1 {
			err = firstOf(err, <-errs)
		}
		for range sessions {
			all = append(all, <-seen...)
		}
		return int64(sessions) * total, err
	})
	if err != nil {
		return nil, cost, err
	}
	return all, cost, nil
}

// produceSteadily produces n JSON events to partition 0 of topic at rate
// per second, each value prefixed with its send time in nanoseconds (8
// bytes, big endian). The producer keeps franz-go's default compression but
// does not linger: a record is sent when it is made, so that the latency
// measured is the gateway's, not the producer's batching.
func produceSteadily(ctx context.Context, brokers []string, topic string, n int, rate float64) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer cl.Close()
	events := newEventSource(2)
	results := make(chan error, n)
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		value := slices.Concat(binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano())), events.next())
		cl.Produce(ctx, &kgo.Record{Value: value}, func(_ *kgo.Record, err error) { results <- err })
	}
	var first error
	for range n {
		first = firstOf(first, <-results)
	}
	return first
}
