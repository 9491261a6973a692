package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protowire"
)

// SubscribeResult measures streaming subscriptions (the server pushes
// records) against APISIX-style polling.
type SubscribeResult struct {
	// ProduceToClient is the time from a producer's send to a subscribed
	// client seeing the record; Latency.ProduceToClient is the same with a
	// tight fetch loop.
	ProduceToClient Percentiles `json:"produce_to_client"`
	// Fanout are runs of sessions subscribed to one partition.
	Fanout []SubscribeFanoutRow `json:"fanout"`
}

// SubscribeFanoutRow is one run of sessions subscribed to one partition
// from its end while records are produced as fast as the producer goes.
type SubscribeFanoutRow struct {
	Sessions   int `json:"sessions"`
	Records    int `json:"records"`
	ValueBytes int `json:"value_bytes"`
	// Delivered counts records received by all sessions together.
	Delivered   int64   `json:"delivered"`
	Seconds     float64 `json:"seconds"`
	RecordsPerS float64 `json:"delivered_records_per_s"`
	// FetchRequests and FetchBytes are the gateway's Kafka fetch traffic.
	FetchRequests     int64   `json:"fetch_requests"`
	FetchBytes        int64   `json:"fetch_bytes"`
	RequestsPerRecord float64 `json:"fetch_requests_per_delivered_record"`
	// Cost is the gateway's CPU per delivered record and peak memory.
	Cost gatewayCost `json:"gateway"`
}

// Field numbers of the subscription extension (PROTOCOL.md).
const (
	fieldCmdKafkaSubscribe  = 100
	fieldKafkaSubscribeResp = 100
)

// subscribe runs cmd_kafka_subscribe for one partition from offset; the
// pushes then come with receivePushes.
func (c *rawClient) subscribe(topic string, partition int32, offset int64) error {
	// CmdKafkaSubscribe starts like CmdKafkaFetch: topic = 1, partitions = 2
	// (one, unpacked), offset = 3.
	cmd := appendPartitionCmd(nil, topic, partition, offset)
	_, err := c.roundTrip(fieldCmdKafkaSubscribe, cmd, fieldKafkaSubscribeResp)
	return err
}

// receivePushes calls record for each pushed record until more returns
// false.
func (c *rawClient) receivePushes(record func(offset int64, value []byte) error, more func() bool) error {
	for more() {
		body, _, field, err := c.receive()
		if err != nil {
			return err
		}
		switch field {
		case fieldKafkaFetchResp:
			if err := eachRecord(body, record); err != nil {
				return err
			}
		case fieldErrorResp:
			return &errServer{message: errorMessage(body)}
		}
	}
	return nil
}

// measureSubscriptions measures subscriptions on topic (one partition): the
// produce-to-client latency of one subscriber, then a fan-out run for each
// session count.
func measureSubscriptions(ctx context.Context, g *gatewayProcess, brokers []string, topic string, samples int, sessions []int, records int, logf func(string, ...any)) (SubscribeResult, error) {
	var res SubscribeResult
	var err error
	logf("subscribe: produce to client, %d samples", samples)
	if res.ProduceToClient, err = subscribedLatency(ctx, g.target.url, brokers, topic, samples); err != nil {
		return res, fmt.Errorf("produce to subscriber: %w", err)
	}
	for _, n := range sessions {
		logf("subscribe: %d sessions, %d records", n, records)
		row, err := subscribedFanout(ctx, g, brokers, topic, n, records, 100)
		if err != nil {
			return res, fmt.Errorf("%d subscribed sessions: %w", n, err)
		}
		logf("subscribe: %d sessions: %.0f records/s delivered, %.4f fetch requests per record", n, row.RecordsPerS, row.RequestsPerRecord)
		res.Fanout = append(res.Fanout, row)
	}
	return res, nil
}

// subscribeWarmup records come first and are not counted: a new shared
// reader joins the broker fetch that follows the one in flight, so its first
// records may wait up to that fetch's wait (see BENCHMARKS.md).
const subscribeWarmup = 100

// subscribedLatency subscribes one session at the end of topic while n
// records carrying their send time are produced a few milliseconds apart,
// after subscribeWarmup records that are not counted.
func subscribedLatency(ctx context.Context, url string, brokers []string, topic string, n int) (Percentiles, error) {
	c, err := dialRaw(ctx, url)
	if err != nil {
		return Percentiles{}, err
	}
	defer c.Close()
	end, err := c.listOffset(topic, 0, -1)
	if err != nil {
		return Percentiles{}, err
	}
	if err := c.subscribe(topic, 0, end); err != nil {
		return Percentiles{}, err
	}
	ds := make([]time.Duration, 0, n+subscribeWarmup)
	errs := make(chan error, 2)
	goSafe(errs, func() error {
		return c.receivePushes(func(offset int64, value []byte) error {
			if len(value) != 8 {
				return fmt.Errorf("record at %d has %d bytes, want a timestamp", offset, len(value))
			}
			ds = append(ds, time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(value)))))
			return nil
		}, func() bool { return len(ds) < n+subscribeWarmup })
	})
	goSafe(errs, func() error { return produceTimestamps(ctx, brokers, topic, n+subscribeWarmup) })
	for range 2 {
		if err := <-errs; err != nil {
			return Percentiles{}, err
		}
	}
	return percentilesOf(ds[subscribeWarmup:]), nil
}

// produceTimestamps produces n records, 2 ms apart, each holding its send
// time in nanoseconds.
func produceTimestamps(ctx context.Context, brokers []string, topic string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(0))
	if err != nil {
		return err
	}
	defer cl.Close()
	for range n {
		value := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: value}).FirstErr(); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return nil
}

// subscribeAtEnd dials sessions to url and subscribes each to partition 0
// of topic from its end, which it returns. The clients dialled so far are
// returned with an error too, for closeAll.
func subscribeAtEnd(ctx context.Context, url, topic string, sessions int) (clients []*rawClient, end int64, err error) {
	clients = make([]*rawClient, 0, sessions)
	for range sessions {
		c, err := dialRaw(ctx, url)
		if err != nil {
			return clients, 0, err
		}
		clients = append(clients, c)
	}
	if end, err = clients[0].listOffset(topic, 0, -1); err != nil {
		return clients, 0, err
	}
	for _, c := range clients {
		if err := c.subscribe(topic, 0, end); err != nil {
			return clients, 0, err
		}
	}
	return clients, end, nil
}

// closeAll closes clients.
func closeAll(clients []*rawClient) {
	for _, c := range clients {
		c.Close()
	}
}

// subscribedFanout subscribes sessions to the end of topic, produces
// records of valueBytes as fast as it can, and counts the gateway's Kafka
// fetches until every session has every record.
func subscribedFanout(ctx context.Context, g *gatewayProcess, brokers []string, topic string, sessions, records, valueBytes int) (SubscribeFanoutRow, error) {
	row := SubscribeFanoutRow{Sessions: sessions, Records: records, ValueBytes: valueBytes}
	clients, end, err := subscribeAtEnd(ctx, g.target.url, topic, sessions)
	defer closeAll(clients)
	if err != nil {
		return row, err
	}
	cpuAtStart, err := g.resetCounters()
	if err != nil {
		return row, err
	}
	start := time.Now()
	errs := make(chan error, sessions+1)
	delivered := make(chan int64, sessions)
	for _, c := range clients {
		goSafe(errs, func() error {
			next := end
			err := c.receivePushes(func(offset int64, _ []byte) error {
				if offset != next {
					return fmt.Errorf("offset %d, want %d", offset, next)
				}
				next++
				return nil
			}, func() bool { return next < end+int64(records) })
			delivered <- next - end
			return err
		})
	}
	goSafe(errs, func() error { return produce(ctx, brokers, topic, 1, records, valueBytes) })
	for range sessions + 1 {
		if err := <-errs; err != nil {
			return row, err
		}
	}
	row.Seconds = time.Since(start).Seconds()
	for range sessions {
		row.Delivered += <-delivered
	}
	s, err := g.stats()
	if err != nil {
		return row, err
	}
	row.RecordsPerS = float64(row.Delivered) / row.Seconds
	row.FetchRequests, row.FetchBytes = s.FetchRequests, s.FetchBytes
	row.RequestsPerRecord = float64(s.FetchRequests) / float64(row.Delivered)
	row.Cost = costFrom(cpuAtStart, s, row.Delivered)
	return row, nil
}

// eachRecord calls record for each KafkaMessage of a KafkaFetchResp body.
func eachRecord(body []byte, record func(offset int64, value []byte) error) error {
	return walk(body, func(n protowire.Number, _ uint64, msg []byte) error {
		if n != 1 {
			return nil
		}
		var (
			off   int64
			value []byte
		)
		if err := walk(msg, func(n protowire.Number, v uint64, b []byte) error {
			switch n {
			case 1:
				off = int64(v)
			case 4:
				value = b
			}
			return nil
		}); err != nil {
			return err
		}
		return record(off, value)
	})
}
