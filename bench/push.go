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
// while JSON events arrive at a steady rate.
type PushRow struct {
	Sessions int     `json:"sessions"`
	Records  int     `json:"records"`
	Rate     float64 `json:"records_per_s"`
	// Latency counts every record at every subscriber, from the producer's
	// send to the subscriber's read.
	Latency Percentiles `json:"latency"`
	// Cost is the gateway's CPU per delivered record and peak memory.
	Cost gatewayCost `json:"gateway"`
}

// measurePush runs pushLatency for each subscriber count.
func measurePush(ctx context.Context, g *gatewayProcess, brokers []string, topic string, cfg Config, logf func(string, ...any)) ([]PushRow, error) {
	var rows []PushRow
	for _, n := range cfg.PushSessions {
		logf("push latency: %d subscribers, %d records at %.0f/s", n, cfg.PushRecords, cfg.PushRate)
		row, err := pushLatency(ctx, g, brokers, topic, n, cfg.PushRecords, cfg.PushRate)
		if err != nil {
			return rows, fmt.Errorf("push latency to %d subscribers: %w", n, err)
		}
		logf("push latency: %d subscribers: p50 %.3f ms, p99 %.3f ms, %.2f us gateway CPU per delivery", n, row.Latency.P50, row.Latency.P99, row.Cost.CPUPerRecord)
		rows = append(rows, row)
	}
	return rows, nil
}

// pushLatency subscribes sessions to the end of topic while records JSON
// events, each prefixed with its send time, are produced at rate per
// second after subscribeWarmup events that are not counted.
func pushLatency(ctx context.Context, g *gatewayProcess, brokers []string, topic string, sessions, records int, rate float64) (PushRow, error) {
	row := PushRow{Sessions: sessions, Records: records, Rate: rate}
	clients, end, err := subscribeAtEnd(ctx, g.target.url, topic, sessions)
	defer closeAll(clients)
	if err != nil {
		return row, err
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
		return row, err
	}
	row.Latency, row.Cost = percentilesOf(all), cost
	return row, nil
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
