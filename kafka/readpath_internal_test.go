package kafka

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/config"
)

// brokerFetches counts the Fetch requests a cluster's franz-go clients send.
type brokerFetches struct{ n atomic.Int64 }

func (c *brokerFetches) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == 1 && err == nil {
		c.n.Add(1)
	}
}

// testCluster returns a shared client of kafka with the cluster settings in
// extra (YAML lines of the cluster) and a count of its broker fetches.
func testCluster(t *testing.T, kafka *kfake.Cluster, extra string) (*Cluster, *brokerFetches) {
	t.Helper()
	doc, err := config.Parse([]byte("kafka_clusters:\n  kafka:\n    brokers: [" + kafka.ListenAddrs()[0] + "]\n" + extra))
	if err != nil {
		t.Fatal(err)
	}
	fetches := new(brokerFetches)
	pool := NewPool(ClientOptions(kgo.WithHooks(fetches)))
	t.Cleanup(pool.Close)
	k, err := pool.Acquire(doc.KafkaClusters["kafka"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Release)
	return k, fetches
}

// oneBrokerKafka starts a one-broker kfake cluster with topic t (one
// partition) and a producer to t, both closed with the test.
func oneBrokerKafka(t *testing.T) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close) // after the clients' cleanups
	producer, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	return kafka, producer
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// consumeAll reads every record of topic/partition 0 with a plain franz-go
// consumer (read_committed).
func consumeAll(t *testing.T, kafka *kfake.Cluster, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := testContext(t)
	var recs []*kgo.Record
	for len(recs) < n {
		fs := cl.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatalf("direct consumer: %v", err)
		}
		recs = append(recs, fs.Records()...)
	}
	return recs
}

// TestAConsumerJumpIsNeverServed hands the cache what the readers' consumer
// hands it after a reset that skipped offsets 3 and 4: fetches at and
// around the jump still get every offset, from Kafka where needed.
func TestAConsumerJumpIsNeverServed(t *testing.T) {
	kafka, producer := oneBrokerKafka(t)
	ctx := testContext(t)
	for i := range 8 {
		if err := producer.ProduceSync(ctx, &kgo.Record{Value: fmt.Appendf(nil, "v%d", i)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	k, fetches := testCluster(t, kafka, "")
	all := consumeAll(t, kafka, "t", 8)
	info, err := k.lookup(ctx, "t", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	k.cacheConsumed(cacheKey{readerKey{"t", 0}, info.topicID}, slices.Concat(all[:3], all[5:]))

	before := fetches.n.Load()
	got, err := k.Fetch(ctx, "t", 0, 0)
	if err != nil || !slices.Equal(offsetsOf(got), []int64{0, 1, 2}) {
		t.Fatalf("fetch at 0: %v, %v; want the cached run [0 1 2] and no more", offsetsOf(got), err)
	}
	if n := fetches.n.Load() - before; n != 0 {
		t.Fatalf("fetch at 0 asked the broker %d times; the run is cached", n)
	}
	for _, at := range []int64{2, 3, 4} {
		got, err := k.Fetch(ctx, "t", 0, at)
		if err != nil || len(got) == 0 || got[0].Offset != at {
			t.Fatalf("fetch at %d: %v, %v", at, offsetsOf(got), err)
		}
		for i, r := range got {
			if r.Offset != at+int64(i) || string(r.Value) != fmt.Sprintf("v%d", r.Offset) {
				t.Fatalf("fetch at %d: record %d is offset %d %q", at, i, r.Offset, r.Value)
			}
		}
	}
	if n := fetches.n.Load() - before; n == 0 {
		t.Fatal("the skipped offsets were served without asking the broker")
	}
}

// awaitReadAheads waits until k decodes nothing in the background.
func awaitReadAheads(k *Cluster) {
	for range readAheadSlots {
		k.readAheads <- struct{}{}
	}
	for range readAheadSlots {
		<-k.readAheads
	}
}

// jsonEvent is a realistic event value: a few hundred bytes of JSON with
// fixed field names and varied values.
func jsonEvent(i int) []byte {
	return fmt.Appendf(nil, `{"event":"page_view","id":%d,"user":"user-%04d","session":"s-%06x","path":"/products/%d/reviews",`+
		`"referrer":"https://www.example.com/search?q=item-%d","agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",`+
		`"ts":"2026-11-29T10:%02d:%02d.%03dZ","country":"%s","amount":%d.%02d}`,
		i, i%977, i*7919%0xffffff, i%5003, i%101, i/60%60, i%60, i%1000, []string{"DE", "FR", "US", "JP", "BR"}[i%5], i%300, i%100)
}

// produceJSONEvents produces total jsonEvents to partition 0 of producer's
// topic, perBatch to a batch.
func produceJSONEvents(ctx context.Context, t *testing.T, producer *kgo.Client, total, perBatch int) {
	t.Helper()
	for i := 0; i < total; i += perBatch {
		batch := make([]*kgo.Record, perBatch)
		for j := range batch {
			batch[j] = &kgo.Record{Value: jsonEvent(i + j)}
		}
		if err := producer.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// cachedRecords counts the records the cache holds.
func cachedRecords(rc *recordCache) int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, p := range rc.parts {
		for _, c := range p.chunks {
			n += c.count()
		}
	}
	return n
}

// TestCompressedBatchesAreDecodedLazilyAndShared reads a partition of
// snappy-compressed JSON (franz-go producer defaults) with the fetch loop
// at last + 1: a fetch decodes only what its reply and a read-ahead need,
// not the whole broker answer; the loop gets every record once, in order;
// a second reader of the same offsets is served from the cache without a
// broker fetch; a small cache stays within its bytes throughout.
func TestCompressedBatchesAreDecodedLazilyAndShared(t *testing.T) {
	kafka, producer := oneBrokerKafka(t)
	ctx := testContext(t)
	// Batches of 100 events, as a producer lingering a few ms writes them
	// at a moderate rate: about 30 KiB decoded, 5 KiB compressed each.
	const total, perBatch = 20000, 100
	produceJSONEvents(ctx, t, producer, total, perBatch)

	const fetchMax = 64 << 10
	k, fetches := testCluster(t, kafka, fmt.Sprintf("    fetch_max_bytes: %d\n    window_bytes: %d\n", fetchMax, 32<<20))

	// What one broker answer at offset 0 holds, decoded.
	info, err := k.lookup(ctx, "t", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxBytes, req.SessionEpoch = -1, fetchMax, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = "t", info.topicID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.PartitionMaxBytes = fetchMax
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := k.cl.Broker(int(info.leader)).Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var compressed int
	answer, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{}, &resp.(*kmsg.FetchResponse).Topics[0].Partitions[0], k.decompressor,
		func(m kgo.FetchBatchMetrics) {
			if m.CompressionType == 2 { // snappy
				compressed++
			}
		})
	if compressed == 0 {
		t.Fatal("the producer's batches are not snappy-compressed")
	}

	first, err := k.Fetch(ctx, "t", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	awaitReadAheads(k)
	decoded := cachedRecords(k.cache)
	t.Logf("one broker answer of %d KiB holds %d records in %d snappy batches; the first fetch returned %d and decoded %d",
		fetchMax>>10, len(answer.Records), compressed, len(first), decoded)
	if decoded >= len(answer.Records)*3/4 {
		t.Fatalf("the first fetch decoded %d of the answer's %d records", decoded, len(answer.Records))
	}

	replies := 0
	loop := func(k *Cluster, bound int) {
		for next := int64(0); next < total; replies++ {
			recs, err := k.Fetch(ctx, "t", 0, next)
			if err != nil {
				t.Fatalf("fetch at %d: %v", next, err)
			}
			if len(recs) == 0 {
				t.Fatalf("fetch at %d: no record", next)
			}
			for _, r := range recs {
				if r.Offset != next || string(r.Value) != string(jsonEvent(int(next))) {
					t.Fatalf("fetch: got offset %d, want %d with its value", r.Offset, next)
				}
				next++
			}
			if b := k.CachedBytes(); b > bound {
				t.Fatalf("the cache holds %d bytes, bound %d", b, bound)
			}
		}
	}
	start := fetches.n.Load()
	loop(k, 64<<20)
	firstLoop := fetches.n.Load() - start
	// Each broker answer serves its reply and, decoded ahead while that
	// reply travels, the next one.
	if firstLoop*3 > int64(replies)*2 {
		t.Fatalf("one reader's %d replies made %d broker fetches: the read-ahead is not used", replies, firstLoop)
	}
	loop(k, 64<<20)
	if again := fetches.n.Load() - start - firstLoop; again != 0 {
		t.Fatalf("a second reader of the same offsets made %d broker fetches (the first made %d)", again, firstLoop)
	}
	t.Logf("the first loop made %d broker fetches, the second none; the cache holds %d KiB", firstLoop, k.CachedBytes()>>10)

	small, _ := testCluster(t, kafka, fmt.Sprintf("    fetch_max_bytes: %d\n    cache_bytes: %d\n    window_bytes: %d\n", fetchMax, 256<<10, 128<<10))
	loop(small, 128<<10)
}

// TestSessionsInStepDecodeOnce has ten readers fetch the same offsets at the
// same time, as sessions that started together do: each offset is fetched
// from the broker and decoded once, the others wait for it and read the
// cache.
func TestSessionsInStepDecodeOnce(t *testing.T) {
	kafka, producer := oneBrokerKafka(t)
	ctx := testContext(t)
	const total = 3000
	produceJSONEvents(ctx, t, producer, total, 100)
	// A reader waits for another's fetch of the same offset up to the
	// fetch wait, then fetches itself: a wait longer than any fetch under
	// load keeps the count to what sharing does.
	const config = "    fetch_max_bytes: 65536\n    fetch_max_wait: 3s\n"
	k, fetches := testCluster(t, kafka, config)
	before := fetches.n.Load()
	errs := make(chan error, 10)
	for range 10 {
		go func() {
			for next := int64(0); next < total; {
				recs, err := k.Fetch(ctx, "t", 0, next)
				if err == nil && (len(recs) == 0 || recs[0].Offset != next) {
					err = fmt.Errorf("fetch at %d: %d records from %v", next, len(recs), offsetsOf(recs[:min(1, len(recs))]))
				}
				if err != nil {
					errs <- err
					return
				}
				next = recs[len(recs)-1].Offset + 1
			}
			errs <- nil
		}()
	}
	for range 10 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	used := fetches.n.Load() - before
	alone, aloneFetches := testCluster(t, kafka, config)
	for next := int64(0); next < total; {
		recs, err := alone.Fetch(ctx, "t", 0, next)
		if err != nil {
			t.Fatal(err)
		}
		next = recs[len(recs)-1].Offset + 1
	}
	single := aloneFetches.n.Load()
	t.Logf("ten readers in step made %d broker fetches; one reader alone makes %d", used, single)
	if used > single {
		t.Fatalf("ten readers in step made %d broker fetches, one alone %d", used, single)
	}
}

// TestTheSharedCacheCheckWaitsInNoSessionsLane: the check of a partition's
// cached records serves every session that joins it, so the session that
// happens to run it must not make them all wait behind its own queued
// broker requests.
func TestTheSharedCacheCheckWaitsInNoSessionsLane(t *testing.T) {
	kafka, _ := oneBrokerKafka(t)
	k, _ := testCluster(t, kafka, "")
	ctx := testContext(t)
	lane := k.turns.newLane()
	sessionCtx := withLane(ctx, lane)
	release, err := k.turns.wait(sessionCtx) // the session's one turn is taken
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	checkCtx, cancel := context.WithTimeout(sessionCtx, 5*time.Second)
	defer cancel()
	if _, err := k.confirmCached(checkCtx, readerKey{"t", 0}); err != nil {
		t.Fatalf("the check waited behind the session's request: %v", err)
	}
}

// TestARecordBeforeTheReaderStartsIsNotWaitedFor: a record written between
// a fetch's empty broker answer and the start of the partition's shared
// reader (which starts at the end of the log, after it) is returned at
// once, not after fetch_max_wait.
func TestARecordBeforeTheReaderStartsIsNotWaitedFor(t *testing.T) {
	kafka, producer := oneBrokerKafka(t)
	ctx := testContext(t)
	if err := producer.ProduceSync(ctx, &kgo.Record{Value: []byte("v0")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	k, _ := testCluster(t, kafka, "    fetch_max_wait: 5s\n    request_timeout: 10s\n")
	var once sync.Once
	kafka.ControlKey(int16(kmsg.ListOffsets), func(req kmsg.Request) (kmsg.Response, error, bool) {
		if req.(*kmsg.ListOffsetsRequest).Topics[0].Partitions[0].Timestamp != -1 {
			kafka.KeepControl()
			return nil, nil, false
		}
		// The reader asks where the log ends: a record comes first.
		once.Do(func() {
			kafka.SleepControl(func() {
				if err := producer.ProduceSync(ctx, &kgo.Record{Value: []byte("v1")}).FirstErr(); err != nil {
					t.Error(err)
				}
			})
		})
		return nil, nil, false
	})
	start := time.Now()
	out := newReply(1, DefaultMaxRecords, 1<<20)
	if err := k.fetchReply(ctx, "t", 0, out); err != nil {
		t.Fatal(err)
	}
	if got := offsetsOf(out.records); !slices.Equal(got, []int64{1}) {
		t.Fatalf("fetch at the end: %v, want the record written meanwhile", got)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Fatalf("the record came after %v, as if waited for with fetch_max_wait", d)
	}
}

func TestAReaderNeverMovesTheEndBack(t *testing.T) {
	r := &partitionReader{end: 10, changed: make(chan struct{})}
	changed, _, _ := r.state()
	r.advance(7) // a stale poll
	if _, end, _ := r.state(); end != 10 {
		t.Fatalf("end %d after a stale advance, want 10", end)
	}
	select {
	case <-changed:
		t.Fatal("a stale advance woke the users")
	default:
	}
	r.advance(12)
	if _, end, _ := r.state(); end != 12 {
		t.Fatalf("end %d, want 12", end)
	}
	r.reset(4) // a data loss: the log was truncated
	if _, end, _ := r.state(); end != 4 {
		t.Fatalf("end %d after a reset, want 4", end)
	}
}

// TestAFetchLoopIsReadAhead has a client read a partition with one fetch
// at the last offset + 1 after the other: after each reply the records of
// the next two replies are fetched from Kafka in the background, one broker
// fetch after the other when one answer is not enough, so that the
// client's next fetches are answered from the cache without a broker round
// trip of their own; the read-ahead goes no further than those two
// replies, and nothing is read ahead of the end of the log.
func TestAFetchLoopIsReadAhead(t *testing.T) {
	kafka, producer := oneBrokerKafka(t)
	ctx := testContext(t)
	const perBatch, batches, valueBytes = 30, 10, 100
	const total = perBatch * batches
	for i := 0; i < total; i += perBatch {
		batch := make([]*kgo.Record, perBatch)
		for j := range batch {
			batch[j] = &kgo.Record{Value: fmt.Appendf(nil, "%0*d", valueBytes, i+j)}
		}
		if err := producer.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// A broker answer of at most one reply's bytes holds one or two
	// batches: reading two replies ahead takes more than one.
	const replyBytes = 40 * valueBytes
	k, fetches := testCluster(t, kafka, fmt.Sprintf("    fetch_max_bytes: %d\n", replyBytes))
	info, err := k.lookup(ctx, "t", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	key := cacheKey{readerKey{"t", 0}, info.topicID}

	fetch := func(offset int64) *reply {
		t.Helper()
		out := newReply(offset, DefaultMaxRecords, replyBytes)
		if err := k.fetchReply(ctx, "t", 0, out); err != nil {
			t.Fatalf("fetch at %d: %v", offset, err)
		}
		for i, r := range out.records {
			if r.Offset != offset+int64(i) || string(r.Value) != fmt.Sprintf("%0*d", valueBytes, r.Offset) {
				t.Fatalf("fetch at %d: record %d is offset %d %q", offset, i, r.Offset, r.Value)
			}
		}
		return out
	}
	out := fetch(0)
	awaitReadAheads(k)
	// Two replies after offset 40 end before 120; a broker answer at
	// most that far on decodes at most two replies (and the rest of a
	// batch) more, so nothing from 240 on is read.
	if k.cache.holds(key, 8*perBatch) {
		t.Fatal("the fetch loop was read ahead by more than two replies")
	}
	for !k.cache.holds(key, total-1) {
		if _, enough := k.cache.heldFrom(key, out.next, readAheadReplies*replyBytes, 1<<30); !enough {
			t.Fatalf("after the reply ending at %d the cache does not hold the next %d replies", out.next, readAheadReplies)
		}
		out = fetch(out.next) // from the cache, which holds its offset
		awaitReadAheads(k)
	}
	// The end of the log is cached, as a read-ahead's answer said: the
	// replies up to there read nothing ahead.
	before := fetches.n.Load()
	for out.next < total {
		out = fetch(out.next)
	}
	awaitReadAheads(k)
	if n := fetches.n.Load() - before; n != 0 {
		t.Fatalf("the fetch loop up to the end of the log sent %d broker fetches, want none", n)
	}
}

// TestSessionsThatDriftApartDecodeOnce has ten sessions read a partition
// fetch after fetch, each pausing for a random 0 to 8 ms after a reply (an
// application at work), so that they drift apart, in a window of a few
// replies: the one ahead holds back its read-ahead while the others still
// read the cache, and they catch up instead of falling out of the window,
// so that the ten make about as many broker fetches as one session alone
// (by age alone, the chunks fetched again pushed out those read next, and
// the ten made ten times as many).
func TestSessionsThatDriftApartDecodeOnce(t *testing.T) {
	kafka, _ := oneBrokerKafka(t)
	ctx := testContext(t)
	producer, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...), kgo.DefaultProduceTopic("t"),
		kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const total = 150000
	produceJSONEvents(ctx, t, producer, total, 1000)
	const config = "    fetch_max_bytes: 262144\n    window_bytes: 4194304\n"
	read := func(sessions int) int64 {
		k, fetches := testCluster(t, kafka, config)
		errs := make(chan error, sessions)
		for i := range sessions {
			go func() {
				lane := withLane(ctx, k.turns.newLane())
				pause := rand.New(rand.NewPCG(uint64(i), 22))
				for next := int64(0); next < total; {
					out := newReply(next, DefaultMaxRecords, 256<<10)
					out.packed = true
					if err := k.fetchReply(lane, "t", 0, out); err != nil || out.n == 0 {
						errs <- fmt.Errorf("fetch at %d: %d records, %v", next, out.n, err)
						return
					}
					next = out.next
					time.Sleep(time.Duration(pause.IntN(8000)) * time.Microsecond)
				}
				errs <- nil
			}()
		}
		for range sessions {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		return fetches.n.Load()
	}
	alone, ten := read(1), read(10)
	t.Logf("one session made %d broker fetches, ten made %d", alone, ten)
	if ten > 2*alone {
		t.Fatalf("ten sessions made %d broker fetches, one alone %d", ten, alone)
	}
}
