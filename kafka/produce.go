package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

const opProduce = "produce message"

// Causes of refused produce requests.
var (
	ErrNoRecords        = errors.New("no records")
	ErrInvalidPartition = errors.New("invalid partition: want -1 (by key) or a partition of the topic")
)

// tooManyRecords is the cause of a produce request above the session's
// record limit.
func tooManyRecords(n, limit int) error {
	return fmt.Errorf("%d records, more than the limit of %d per request", n, limit)
}

// produceState keeps a session's produce requests in the order the session
// read them and within its byte rate.
type produceState struct {
	order    turns
	throttle throttle
}

// produce answers cmd_kafka_produce once Kafka has acknowledged every record
// (acks from all in-sync replicas, idempotent producer). The records of one
// request, and the requests of one session, reach each partition in the
// order the session read them: a request hands its records to the shared
// producer only after the session's earlier produce requests did.
func (h *handlers) produce(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
	cmd := req.Msg.GetCmdKafkaProduce()
	topic, partition, records := cmd.GetTopic(), cmd.GetPartition(), cmd.GetRecords()
	fail := func(p int32, cause error) (*pb.PubSubResp, error) {
		return nil, &CommandError{Op: opProduce, Topic: topic, Partition: p, Cause: cause}
	}
	pass, err := h.writes.order.await(ctx, req.Order())
	defer pass()
	if err != nil {
		return fail(partition, err)
	}
	stamps, err := h.policy.produceStamps(topic)
	if err != nil {
		return fail(partition, err)
	}
	switch {
	case len(records) == 0:
		return fail(partition, ErrNoRecords)
	case len(records) > h.policy.maxProduceRecords:
		return fail(partition, tooManyRecords(len(records), h.policy.maxProduceRecords))
	case partition < -1:
		return fail(partition, ErrInvalidPartition)
	}
	krs := make([]*kgo.Record, len(records))
	size := 0
	for i, r := range records {
		krs[i] = toKgoRecord(topic, partition, r)
		for _, s := range stamps {
			s.stamp(krs[i]) // the access rule's records replace the client's
		}
		size += recordBytes(krs[i])
	}
	if err := h.writes.throttle.wait(ctx, size, h.policy.produceBytesPerSecond); err != nil {
		return fail(partition, h.k.cause(ctx, err))
	}
	ctx, cancel := context.WithTimeout(ctx, h.k.cfg.RequestTimeout.Duration())
	defer cancel()
	partitions, err := h.k.topicPartitions(ctx, topic)
	if err != nil {
		return fail(partition, err)
	}
	if partition >= 0 && !slices.Contains(partitions, partition) {
		return fail(partition, ErrPartitionNotFound)
	}
	producer, err := h.k.producer()
	if err != nil {
		return fail(partition, err)
	}
	var (
		mu       sync.Mutex
		pending  = len(krs)
		acked    = make(chan struct{}) // closed when every record is acknowledged or failed
		firstErr error
	)
	handed := time.Now()
	for _, r := range krs {
		producer.Produce(ctx, r, func(r *kgo.Record, err error) {
			// franz-go runs this in its own goroutine.
			defer h.k.pool.recoverPanic("in a produce acknowledgement")
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = &CommandError{Op: opProduce, Topic: topic, Partition: r.Partition, Cause: h.k.cause(ctx, err)}
			}
			if pending--; pending == 0 {
				close(acked)
			}
		})
	}
	pass() // the session's next produce request may hand its records over
	select {
	case <-acked:
	case <-ctx.Done():
		// A record already sent cannot be taken back (the idempotent
		// producer keeps retrying it): the outcome is unknown, and the
		// client hears so after the request timeout.
		return fail(partition, h.k.cause(ctx, ctx.Err()))
	}
	if firstErr != nil {
		return nil, firstErr
	}
	h.k.pool.metrics.ProduceAck(time.Since(handed))
	tally := tallyOf(ctx)
	offsets := make([]*pb.KafkaPartitionOffset, len(krs))
	for i, r := range krs {
		offsets[i] = &pb.KafkaPartitionOffset{Partition: r.Partition, Offset: r.Offset}
		tally.Touch(topic, r.Partition)
	}
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaProduceResp{
		KafkaProduceResp: &pb.KafkaProduceResp{Offsets: offsets},
	}}, nil
}

// toKgoRecord converts a protocol record for topic; partition -1 leaves the
// choice to the partitioner.
func toKgoRecord(topic string, partition int32, r *pb.KafkaRecord) *kgo.Record {
	kr := &kgo.Record{Topic: topic, Partition: partition, Key: r.GetKey(), Value: r.GetValue()}
	if ts := r.GetTimestamp(); ts > 0 {
		kr.Timestamp = time.UnixMilli(ts)
	}
	if hs := r.GetHeaders(); len(hs) > 0 {
		kr.Headers = make([]kgo.RecordHeader, len(hs))
		for i, h := range hs {
			kr.Headers[i] = kgo.RecordHeader{Key: h.GetKey(), Value: h.GetValue()}
		}
	}
	return kr
}

// producer returns the cluster's producer, shared by all its sessions and
// created on first use.
func (k *Cluster) producer() (*kgo.Client, error) {
	k.producerMu.Lock()
	defer k.producerMu.Unlock()
	if k.producerClosed {
		return nil, kgo.ErrClientClosed
	}
	if k.prod != nil {
		return k.prod, nil
	}
	cl, err := kgo.NewClient(append(slices.Clone(k.opts),
		kgo.WithHooks(&k.setup),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotence is franz-go's default and needs it
		kgo.RecordPartitioner(requestPartitioner{}),
		// Records batch while a request is in flight; a linger would
		// only add to every acknowledgement's latency.
		kgo.ProducerLinger(0),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafka: producer: %w", err)
	}
	k.prod = cl
	return cl, nil
}

// closeProducer closes the producer, if one was made; later produce
// requests fail.
func (k *Cluster) closeProducer() {
	k.producerMu.Lock()
	defer k.producerMu.Unlock()
	k.producerClosed = true
	if k.prod != nil {
		k.prod.Close()
	}
}

// requestPartitioner sends a record to the partition its request named, and
// a record of a request that named none (-1) where Kafka's default
// partitioner would: by the murmur2 hash of its key, or to a sticky
// partition when it has no key.
type requestPartitioner struct{}

// ForTopic returns the partitioner of one topic.
func (requestPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return &requestTopicPartitioner{byKey: kgo.StickyKeyPartitioner(nil).ForTopic(topic)}
}

type requestTopicPartitioner struct {
	byKey kgo.TopicPartitioner
}

// RequiresConsistency keeps a record on the partition its request named,
// or its key hashes to, even while that partition is unavailable.
func (p *requestTopicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return r.Partition >= 0 || p.byKey.RequiresConsistency(r)
}

// Partition picks r's partition among n.
func (p *requestTopicPartitioner) Partition(r *kgo.Record, n int) int {
	if r.Partition >= 0 {
		return int(r.Partition)
	}
	return p.byKey.Partition(r, n)
}

// OnNewBatch moves the sticky choice for records without a key.
func (p *requestTopicPartitioner) OnNewBatch() {
	if b, ok := p.byKey.(kgo.TopicPartitionerOnNewBatch); ok {
		b.OnNewBatch()
	}
}

// turns lets a session's requests of one command act in the order the
// session read them (pubsub.Request.Order).
type turns struct {
	mu      sync.Mutex
	next    uint64          // the order whose turn it is
	passed  map[uint64]bool // orders above next that passed their turn already
	changed chan struct{}   // closed when next moves; made by a waiter
}

// await waits for order's turn, or for ctx to end. It returns the function
// that passes the turn on, which the caller must call (more calls are
// harmless) whether or not await failed: a request that gives up early
// passes its turn once the requests before it have passed theirs.
func (t *turns) await(ctx context.Context, order uint64) (pass func(), err error) {
	var once sync.Once
	pass = func() { once.Do(func() { t.pass(order) }) }
	for {
		t.mu.Lock()
		if t.next == order {
			t.mu.Unlock()
			return pass, nil
		}
		if t.changed == nil {
			t.changed = make(chan struct{})
		}
		changed := t.changed
		t.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return pass, ctx.Err()
		}
	}
}

func (t *turns) pass(order uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if order != t.next {
		if t.passed == nil {
			t.passed = make(map[uint64]bool)
		}
		t.passed[order] = true
		return
	}
	t.next++
	for t.passed[t.next] {
		delete(t.passed, t.next)
		t.next++
	}
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// throttle spaces a session's produce requests so that their record bytes
// average at most the session's rate: a request waits until the bytes of the
// requests before it are paid for.
type throttle struct {
	mu   sync.Mutex
	free time.Time // when the bytes produced so far are paid for
}

// wait waits until n more bytes may be produced at bytesPerSecond (0: at
// once), or until ctx ends.
func (t *throttle) wait(ctx context.Context, n, bytesPerSecond int) error {
	if bytesPerSecond <= 0 {
		return nil
	}
	t.mu.Lock()
	start := t.free
	if now := time.Now(); start.Before(now) {
		start = now
	}
	t.free = start.Add(time.Duration(n) * time.Second / time.Duration(bytesPerSecond))
	t.mu.Unlock()
	d := time.Until(start)
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
