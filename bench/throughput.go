package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ThroughputRow is one read of a topic's records, directly or through the
// gateway.
type ThroughputRow struct {
	// Reader is "direct" (a franz-go partition consumer) or "gateway".
	Reader string `json:"reader"`
	// Sessions is the number of concurrent WebSocket sessions (0 direct).
	Sessions    int     `json:"sessions"`
	ValueBytes  int     `json:"value_bytes"`
	Records     int     `json:"records"`
	Seconds     float64 `json:"seconds"`
	RecordsPerS float64 `json:"records_per_s"`
	// MBPerS counts value bytes, 1 MB = 10^6 B.
	MBPerS float64 `json:"mb_per_s"`
	// OfDirect is records/s relative to the direct reader of the same
	// records (1 for the direct row itself).
	OfDirect float64 `json:"of_direct"`
}

func newThroughputRow(reader string, sessions, valueBytes, records int, d time.Duration) ThroughputRow {
	s := d.Seconds()
	return ThroughputRow{
		Reader: reader, Sessions: sessions, ValueBytes: valueBytes, Records: records, Seconds: s,
		RecordsPerS: float64(records) / s,
		MBPerS:      float64(records) * float64(valueBytes) / s / 1e6,
	}
}

// produce writes n records of valueBytes random (incompressible) bytes to
// topic, round robin over partitions [0, partitions), without compression.
func produce(ctx context.Context, brokers []string, topic string, partitions, n, valueBytes int) error {
	values := make([][]byte, 1024)
	for i := range values {
		values[i] = make([]byte, valueBytes)
		rand.Read(values[i])
	}
	return produceRecords(ctx, brokers, topic, n, func(i int) *kgo.Record {
		return &kgo.Record{Partition: int32(i % partitions), Value: values[i%len(values)]}
	}, kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
}

// produceRecords writes records 0 to n-1, as record makes them, to topic
// with one franz-go producer configured by opts on top of its defaults,
// and waits until all are acknowledged.
func produceRecords(ctx context.Context, brokers []string, topic string, n int, record func(i int) *kgo.Record, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic)}, opts...)...)
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer cl.Close()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	wg.Add(n)
	for i := range n {
		cl.Produce(ctx, record(i), func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				mu.Lock()
				firstErr = firstOf(firstErr, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("produce to %s: %w", topic, firstErr)
	}
	return nil
}

// firstOf returns the first non-nil error.
func firstOf(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// valueCheck tells whether a record's value is one the reader expects.
type valueCheck func(value []byte) error

// sizeIs accepts values of exactly n bytes.
func sizeIs(n int) valueCheck {
	return func(value []byte) error {
		if len(value) != n {
			return fmt.Errorf("%d bytes, want %d", len(value), n)
		}
		return nil
	}
}

// readDirect has consumers franz-go clients each read the first
// perPartition records of every one of partitions of topic, and returns how
// long that took. As the gateway's sessions, the clients are connected
// before the clock starts.
func readDirect(ctx context.Context, brokers []string, topic string, partitions []int32, perPartition, consumers int, check valueCheck) (time.Duration, error) {
	clients := make([]*kgo.Client, 0, consumers)
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	for range consumers {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			return 0, fmt.Errorf("direct consumer: %w", err)
		}
		clients = append(clients, cl)
		if err := cl.Ping(ctx); err != nil {
			return 0, fmt.Errorf("direct consumer: %w", err)
		}
	}
	errs := make(chan error, consumers)
	start := time.Now()
	for _, cl := range clients {
		goSafe(errs, func() error { return consume(ctx, cl, topic, partitions, perPartition, check) })
	}
	var err error
	for range consumers {
		err = firstOf(err, <-errs)
	}
	return time.Since(start), err
}

// consume reads the first perPartition records of every one of partitions
// of topic with cl, checking each record's offset and value.
func consume(ctx context.Context, cl *kgo.Client, topic string, partitions []int32, perPartition int, check valueCheck) error {
	offsets := make(map[int32]kgo.Offset, len(partitions))
	next := make(map[int32]int64, len(partitions))
	for _, p := range partitions {
		offsets[p] = kgo.NewOffset().At(0)
		next[p] = 0
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets})
	for seen, total := 0, len(partitions)*perPartition; seen < total; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("direct consumer: %d of %d records: %w", seen, total, err)
		}
		var bad error
		fs.EachError(func(t string, p int32, err error) { bad = firstOf(bad, fmt.Errorf("%s/%d: %w", t, p, err)) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= int64(perPartition) {
				return // past this reader's share (a partition holding more)
			}
			if r.Offset != next[r.Partition] {
				bad = firstOf(bad, fmt.Errorf("partition %d: offset %d, want %d", r.Partition, r.Offset, next[r.Partition]))
			} else if err := check(r.Value); err != nil {
				bad = firstOf(bad, fmt.Errorf("partition %d, offset %d: %w", r.Partition, r.Offset, err))
			}
			next[r.Partition]++
			seen++
		})
		if bad != nil {
			return fmt.Errorf("direct consumer: %w", bad)
		}
	}
	return nil
}

// partitionRange returns the partitions first, first+1, ..., first+n-1.
func partitionRange(first, n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(first + i)
	}
	return out
}

// Layouts of the sessions of a gateway read over the partitions of a topic.
const (
	// disjointPartitions: session i reads the i-th partition, the
	// (i+sessions)-th and so on.
	disjointPartitions = iota
	// everyPartition: every session reads every partition (as every direct
	// consumer does), so sessions share what they read.
	everyPartition
)

// readGateway reads perPartition records from each of partitions of topic
// through the gateway with sessions APISIX-style clients laid out over the
// partitions by layout (session i reading partitions[p] with p mod sessions
// = i, or every session all of them): list the earliest offset, fetch from it, continue
// at last+1. The sessions connect before the clock starts.
func readGateway(ctx context.Context, gw gatewayTarget, topic string, partitions []int32, perPartition, sessions, layout int, check valueCheck) (time.Duration, error) {
	clients, err := dialSessions(ctx, gw, sessions)
	if err != nil {
		return 0, err
	}
	defer closeSessions(clients)
	errs := make(chan error, sessions)
	start := time.Now()
	for i, c := range clients {
		first, step := i, sessions
		if layout == everyPartition {
			first, step = 0, 1
		}
		goSafe(errs, func() error {
			for p := first; p < len(partitions); p += step {
				if err := readPartition(c, topic, partitions[p], int64(perPartition), check); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for range sessions {
		if err := <-errs; err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// readPartition reads the first n records of topic/partition.
func readPartition(c sessionClient, topic string, partition int32, n int64, check valueCheck) error {
	next, err := c.listOffset(topic, partition, -2)
	if err != nil {
		return fmt.Errorf("list offset of partition %d: %w", partition, err)
	}
	for next < n {
		err := c.fetch(topic, partition, next, func(offset int64, value []byte) error {
			if offset >= n {
				return nil // past this reader's share
			}
			if offset != next {
				return fmt.Errorf("offset %d, want %d", offset, next)
			}
			if err := check(value); err != nil {
				return fmt.Errorf("offset %d: %w", offset, err)
			}
			next++
			return nil
		})
		if err != nil {
			return fmt.Errorf("fetch partition %d at %d: %w", partition, next, err)
		}
	}
	return nil
}

// gatewayTarget is where and with which client sessions are opened.
type gatewayTarget struct {
	url    string
	client string // ClientProto, ClientRaw or ClientGo
}

// dialSessions opens n sessions.
func dialSessions(ctx context.Context, gw gatewayTarget, n int) ([]sessionClient, error) {
	clients := make([]sessionClient, 0, n)
	for range n {
		c, err := dialSession(ctx, gw.client, gw.url)
		if err != nil {
			closeSessions(clients)
			return nil, err
		}
		clients = append(clients, c)
	}
	return clients, nil
}

func closeSessions(clients []sessionClient) {
	for _, c := range clients {
		c.Close()
	}
}

// goSafe runs f in a goroutine and sends its result, or its panic as an
// error, to errs.
func goSafe(errs chan<- error, f func() error) {
	go func() {
		defer func() {
			if p := recover(); p != nil {
				errs <- fmt.Errorf("panic: %v", p)
			}
		}()
		errs <- f()
	}()
}
