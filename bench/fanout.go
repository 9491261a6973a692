package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// FanoutResult is the Kafka traffic of many sessions tailing one partition.
type FanoutResult struct {
	Sessions   int `json:"sessions"`
	Records    int `json:"records"`
	ValueBytes int `json:"value_bytes"`
	// Delivered counts records received by all sessions together.
	Delivered     int64   `json:"delivered"`
	Seconds       float64 `json:"seconds"`
	FetchRequests int64   `json:"fetch_requests"`
	FetchBytes    int64   `json:"fetch_bytes"`
	// RequestsPerRecord and BytesPerRecord divide the gateway's Kafka
	// fetch traffic by the delivered records.
	RequestsPerRecord float64 `json:"fetch_requests_per_delivered_record"`
	BytesPerRecord    float64 `json:"fetch_bytes_per_delivered_record"`
}

// fanoutBurst is how many records the producer sends at a time, every
// fanoutInterval.
const (
	fanoutBurst    = 10
	fanoutInterval = 10 * time.Millisecond
)

// measureFanout has sessions clients tail partition 0 of topic from its end
// while records of valueBytes arrive in bursts, and counts the gateway's
// Kafka fetches until every session has seen every record.
func measureFanout(ctx context.Context, g *gatewayProcess, brokers []string, topic string, sessions, records, valueBytes int) (FanoutResult, error) {
	res := FanoutResult{Sessions: sessions, Records: records, ValueBytes: valueBytes}
	clients, err := dialSessions(ctx, g.target, sessions)
	if err != nil {
		return res, err
	}
	defer closeSessions(clients)
	end, err := clients[0].listOffset(topic, 0, -1)
	if err != nil {
		return res, fmt.Errorf("list offset: %w", err)
	}
	if _, err := g.resetCounters(); err != nil {
		return res, err
	}
	start := time.Now()
	errs := make(chan error, sessions+1)
	delivered := make(chan int64, sessions)
	for _, c := range clients {
		goSafe(errs, func() error {
			n, err := tail(c, topic, end, end+int64(records))
			delivered <- n
			return err
		})
	}
	goSafe(errs, func() error { return produceBursts(ctx, brokers, topic, records, valueBytes) })
	for range sessions + 1 {
		if err := <-errs; err != nil {
			return res, err
		}
	}
	res.Seconds = time.Since(start).Seconds()
	for range sessions {
		res.Delivered += <-delivered
	}
	s, err := g.stats()
	if err != nil {
		return res, err
	}
	res.FetchRequests, res.FetchBytes = s.FetchRequests, s.FetchBytes
	res.RequestsPerRecord = float64(s.FetchRequests) / float64(res.Delivered)
	res.BytesPerRecord = float64(s.FetchBytes) / float64(res.Delivered)
	return res, nil
}

// tail fetches offsets [from, to) as they arrive and returns how many
// records it received.
func tail(c sessionClient, topic string, from, to int64) (int64, error) {
	var received int64
	for next := from; next < to; {
		err := c.fetch(topic, 0, next, func(offset int64, _ []byte) error {
			if offset != next {
				return fmt.Errorf("offset %d, want %d", offset, next)
			}
			received++
			next++
			return nil
		})
		if err != nil {
			return received, fmt.Errorf("tail fetch at %d: %w", next, err)
		}
	}
	return received, nil
}

// produceBursts writes n records of valueBytes to topic, fanoutBurst at a
// time every fanoutInterval.
func produceBursts(ctx context.Context, brokers []string, topic string, n, valueBytes int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer cl.Close()
	tick := time.NewTicker(fanoutInterval)
	defer tick.Stop()
	for sent := 0; sent < n; sent += fanoutBurst {
		burst := make([]*kgo.Record, min(fanoutBurst, n-sent))
		for i := range burst {
			burst[i] = &kgo.Record{Value: make([]byte, valueBytes)}
			rand.Read(burst[i].Value)
		}
		if err := cl.ProduceSync(ctx, burst...).FirstErr(); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
		<-tick.C
	}
	return nil
}
