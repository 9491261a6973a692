package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Percentiles summarises durations, in milliseconds.
type Percentiles struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	P999    float64 `json:"p999_ms"`
	Max     float64 `json:"max_ms"`
}

func percentilesOf(ds []time.Duration) Percentiles {
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := min(len(ds)-1, int(q*float64(len(ds))))
		return float64(ds[i]) / float64(time.Millisecond)
	}
	return Percentiles{Samples: len(ds), P50: at(0.50), P99: at(0.99), P999: at(0.999), Max: at(1)}
}

// LatencyResult are round trips of one session at light load (one request
// at a time).
type LatencyResult struct {
	// Ping is the cmd_ping round trip: the gateway alone, no Kafka.
	Ping Percentiles `json:"ping"`
	// Fetch is the round trip of a cmd_kafka_fetch that returns one 100 B
	// record.
	Fetch Percentiles `json:"fetch"`
	// ProduceToClient is the time from a producer's send to a client in a
	// tight fetch loop seeing the record.
	ProduceToClient Percentiles `json:"produce_to_client"`
}

// measureLatency runs samples requests of each kind on topic, which it
// fills with records first.
func measureLatency(ctx context.Context, gw gatewayTarget, brokers []string, topic string, samples int) (LatencyResult, error) {
	const preload = 100
	if err := produce(ctx, brokers, topic, 1, preload, 100); err != nil {
		return LatencyResult{}, err
	}
	c, err := dialSession(ctx, gw.client, gw.url)
	if err != nil {
		return LatencyResult{}, err
	}
	defer c.Close()
	var res LatencyResult
	if res.Ping, err = roundTrips(samples, c.ping); err != nil {
		return res, fmt.Errorf("ping: %w", err)
	}
	if res.Fetch, err = roundTrips(samples, func() error {
		records := 0
		err := c.fetch(topic, 0, preload-1, func(int64, []byte) error { records++; return nil })
		if err == nil && records != 1 {
			err = fmt.Errorf("%d records, want 1", records)
		}
		return err
	}); err != nil {
		return res, fmt.Errorf("fetch: %w", err)
	}
	res.ProduceToClient, err = produceToClient(ctx, c, brokers, topic, samples)
	return res, err
}

func roundTrips(n int, f func() error) (Percentiles, error) {
	ds := make([]time.Duration, n)
	for i := range ds {
		start := time.Now()
		if err := f(); err != nil {
			return Percentiles{}, err
		}
		ds[i] = time.Since(start)
	}
	return percentilesOf(ds), nil
}

// produceToClient produces n records, one every few milliseconds, each
// carrying its send time, while c fetches the partition in a tight loop.
func produceToClient(ctx context.Context, c sessionClient, brokers []string, topic string, n int) (Percentiles, error) {
	next, err := c.listOffset(topic, 0, -1)
	if err != nil {
		return Percentiles{}, fmt.Errorf("list offset: %w", err)
	}
	seen := make(chan []time.Duration, 1)
	errs := make(chan error, 2)
	goSafe(errs, func() error {
		ds := make([]time.Duration, 0, n)
		for len(ds) < n {
			err := c.fetch(topic, 0, next, func(offset int64, value []byte) error {
				if len(value) != 8 {
					return fmt.Errorf("record at %d has %d bytes, want a timestamp", offset, len(value))
				}
				sent := time.Unix(0, int64(binary.BigEndian.Uint64(value)))
				ds = append(ds, time.Since(sent))
				next = offset + 1
				return nil
			})
			if err != nil {
				return fmt.Errorf("tail fetch at %d: %w", next, err)
			}
		}
		seen <- ds
		return nil
	})
	goSafe(errs, func() error { return produceTimestamps(ctx, brokers, topic, n) })
	for range 2 {
		if err := <-errs; err != nil {
			return Percentiles{}, err
		}
	}
	return percentilesOf(<-seen), nil
}
