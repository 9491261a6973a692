package kafka_test

// A fetch at any offset returns exactly what Kafka holds from that offset.
//
// Every test here writes a partition the way real producers do (compressed
// batches of JSON events, headers, transactions), reads it back directly with
// a franz-go consumer (read_committed: records of aborted transactions and
// control records are not data), and then asks the gateway for every offset
// of the log, with cmd_kafka_fetch and with subscriptions, in one session and
// again in a second one (which a cache of decoded records would serve). A
// reply must hold the data records of the log from the requested offset on,
// in order, none skipped; where the requested offset holds no data record
// (compacted away, a control record, an aborted transaction) the first record
// is the next data record and the reply carries next_offset, so that no
// client is stuck before a gap in the log.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// exactFetchMaxBytes keeps replies to a few JSON events, so that they end
// inside compressed batches and the next fetch starts mid-batch.
const exactFetchMaxBytes = 2048

// maxReported bounds the problems a check reports one by one.
const maxReported = 12

// partitionLog is what Kafka holds in one partition: its data records in
// offset order and the log's start and end offsets.
type partitionLog struct {
	topic      string
	partition  int32
	start, end int64
	records    []*kgo.Record
}

// readLog reads topic/partition directly with a franz-go consumer
// (read_committed), from the log start up to and including the data record
// at last, which the caller knows from producing.
func readLog(t testing.TB, brokers []string, topic string, partition int32, last int64) *partitionLog {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	starts, err := kadm.NewClient(adm).ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list start offsets: %v", err)
	}
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("list end offsets: %v", err)
	}
	start, _ := starts.Lookup(topic, partition)
	end, _ := ends.Lookup(topic, partition)
	log := &partitionLog{topic: topic, partition: partition, start: start.Offset, end: end.Offset}
	if start.Err != nil || end.Err != nil {
		t.Fatalf("offsets of %s/%d: %v, %v", topic, partition, start.Err, end.Err)
	}
	if last < log.start {
		return log
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(log.start)}}),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for len(log.records) == 0 || log.records[len(log.records)-1].Offset < last {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("direct read of %s/%d: %d records up to offset %d, want up to %d", topic, partition, len(log.records), log.lastOffset(), last)
		}
		fetches.EachError(func(_ string, _ int32, err error) { t.Logf("direct read of %s/%d: %v", topic, partition, err) })
		log.records = append(log.records, fetches.Records()...)
	}
	if log.records[len(log.records)-1].Offset != last {
		t.Fatalf("direct read of %s/%d: no data record at offset %d", topic, partition, last)
	}
	return log
}

// lastOffset returns the offset of the last data record, -1 when none.
func (l *partitionLog) lastOffset() int64 {
	if len(l.records) == 0 {
		return -1
	}
	return l.records[len(l.records)-1].Offset
}

// from returns the index of the first data record at or after offset.
func (l *partitionLog) from(offset int64) int {
	return sort.Search(len(l.records), func(i int) bool { return l.records[i].Offset >= offset })
}

// nextBound returns the furthest offset a client may be told to ask for
// next after the data records before index i: the next data record, or the
// end of the log when there is none.
func (l *partitionLog) nextBound(i int) int64 {
	if i < len(l.records) {
		return l.records[i].Offset
	}
	return l.end
}

// checkReply checks a reply to a fetch at offset against the log and
// returns the offset the client asks for next. An empty reply before the end of the log must move the client on
// with next_offset.
func (l *partitionLog) checkReply(offset int64, r *pb.KafkaFetchResp) (next int64, err error) {
	where := fmt.Sprintf("%s/%d at offset %d", l.topic, l.partition, offset)
	i := l.from(offset)
	msgs := r.GetMessages()
	for j, m := range msgs {
		if i+j >= len(l.records) {
			return 0, fmt.Errorf("%s: message %d is %s, beyond the log's last data record %d", where, j, describe(m), l.lastOffset())
		}
		if diff := sameRecord(m, l.records[i+j]); diff != "" {
			return 0, fmt.Errorf("%s: message %d: %s", where, j, diff)
		}
	}
	lower := offset // the least next offset a client may be given
	if len(msgs) > 0 {
		lower = msgs[len(msgs)-1].GetOffset() + 1
	}
	upper := l.nextBound(i + len(msgs))
	skipped := len(msgs) > 0 && msgs[0].GetOffset() != offset || len(msgs) == 0 && offset < l.end
	n := r.GetNextOffset()
	switch {
	case skipped && n == 0:
		if len(msgs) == 0 {
			return 0, fmt.Errorf("%s: empty reply before the end of the log (%d) and no next_offset: the client is stuck (the next data record is %s)", where, l.end, l.describeAt(i))
		}
		return 0, fmt.Errorf("%s holds no data record: the reply starts at %d but carries no next_offset", where, msgs[0].GetOffset())
	case n != 0 && (n < lower || n > upper):
		return 0, fmt.Errorf("%s: next_offset %d outside [%d, %d] (%d messages; the next data record is %s)", where, n, lower, upper, len(msgs), l.describeAt(i+len(msgs)))
	case len(msgs) == 0 && offset < l.end && n <= offset:
		return 0, fmt.Errorf("%s: empty reply with next_offset %d: the client is stuck", where, n)
	case n != 0:
		return n, nil
	}
	return lower, nil
}

// checkStream checks records delivered from start on (a fetch loop's or a
// subscription's, in arrival order) against the log: every data record
// exactly once, in order, equal, none skipped; complete also demands every
// record up to the last. It returns the problems found, described with
// partition and offsets.
func (l *partitionLog) checkStream(who string, start int64, got []*pb.KafkaMessage, complete bool) []string {
	var problems []string
	report := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s, %s/%d: ", who, l.topic, l.partition)+fmt.Sprintf(format, args...))
	}
	i := l.from(start)
	var prev *pb.KafkaMessage
	for _, m := range got {
		off := m.GetOffset()
		switch {
		case i < len(l.records) && off == l.records[i].Offset:
			if diff := sameRecord(m, l.records[i]); diff != "" {
				report("%s", diff)
			}
			i++
		case prev != nil && off <= prev.GetOffset():
			report("offset %d again after %d (duplicate or out of order)", off, prev.GetOffset())
		default:
			j := l.from(off)
			if j >= len(l.records) || l.records[j].Offset != off {
				report("%s is not a data record of the log (after %s)", describe(m), describeMsg(prev))
				continue
			}
			if j < i {
				report("%s came before %s, the first one expected", describe(m), l.describeAt(i))
				prev = m
				continue
			}
			report("after %s came offset %d: %s never delivered", describeMsg(prev), off, l.describeRange(i, j))
			if diff := sameRecord(m, l.records[j]); diff != "" {
				report("%s", diff)
			}
			i = j + 1
		}
		prev = m
	}
	if complete && i < len(l.records) {
		report("stopped after %s: %s never delivered", describeMsg(prev), l.describeRange(i, len(l.records)))
	}
	return problems
}

// checkPushNext checks the next_offset of a subscription's push whose
// records follow cursor: when set, it lies past the pushed records and skips
// no data record.
func (l *partitionLog) checkPushNext(cursor int64, r *pb.KafkaFetchResp) error {
	n, msgs := r.GetNextOffset(), r.GetMessages()
	if n == 0 {
		return nil
	}
	lower := cursor
	if len(msgs) > 0 {
		lower = msgs[len(msgs)-1].GetOffset() + 1
	}
	i := l.from(lower)
	if n < lower || n > l.nextBound(i) {
		return fmt.Errorf("%s/%d: push from %d with %d records carries next_offset %d outside [%d, %d]", l.topic, l.partition, cursor, len(msgs), n, lower, l.nextBound(i))
	}
	return nil
}

// describeRange names the data records of indexes [i, j): their offsets and
// the first value, the way a reader looks them up in the log.
func (l *partitionLog) describeRange(i, j int) string {
	first, last := l.records[i], l.records[j-1]
	if i == j-1 {
		return fmt.Sprintf("offset %d (value %q)", first.Offset, clip(first.Value))
	}
	return fmt.Sprintf("offsets %d-%d (%d records, first value %q)", first.Offset, last.Offset, j-i, clip(first.Value))
}

// describeAt names the data record at index i, or the end of the log.
func (l *partitionLog) describeAt(i int) string {
	if i >= len(l.records) {
		return fmt.Sprintf("none before the end %d", l.end)
	}
	return fmt.Sprintf("offset %d", l.records[i].Offset)
}

// sameRecord compares a delivered message with the record Kafka holds and
// describes the first difference ("" when equal).
func sameRecord(m *pb.KafkaMessage, r *kgo.Record) string {
	switch {
	case m.GetOffset() != r.Offset:
		return fmt.Sprintf("got %s, want offset %d", describe(m), r.Offset)
	case !bytes.Equal(m.GetValue(), r.Value):
		return fmt.Sprintf("offset %d: %s", r.Offset, valueDiff(m.GetValue(), r.Value))
	case !bytes.Equal(m.GetKey(), r.Key):
		return fmt.Sprintf("offset %d: key %q, Kafka holds %q", r.Offset, m.GetKey(), r.Key)
	case m.GetTimestamp() != r.Timestamp.UnixMilli():
		return fmt.Sprintf("offset %d: timestamp %d, Kafka holds %d", r.Offset, m.GetTimestamp(), r.Timestamp.UnixMilli())
	case len(m.GetHeaders()) != len(r.Headers):
		return fmt.Sprintf("offset %d: %d headers, Kafka holds %d", r.Offset, len(m.GetHeaders()), len(r.Headers))
	}
	for i, h := range m.GetHeaders() {
		if h.GetKey() != r.Headers[i].Key || !bytes.Equal(h.GetValue(), r.Headers[i].Value) {
			return fmt.Sprintf("offset %d: header %d is %q=%q, Kafka holds %q=%q", r.Offset, i, h.GetKey(), h.GetValue(), r.Headers[i].Key, r.Headers[i].Value)
		}
	}
	return ""
}

// valueDiff shows where a delivered value first differs from Kafka's.
func valueDiff(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	from := max(i-16, 0)
	return fmt.Sprintf("value differs from byte %d: got ...%q, Kafka holds ...%q", i, clip(got[from:]), clip(want[from:]))
}

func describe(m *pb.KafkaMessage) string {
	return fmt.Sprintf("offset %d (value %q)", m.GetOffset(), clip(m.GetValue()))
}

func describeMsg(m *pb.KafkaMessage) string {
	if m == nil {
		return "the start"
	}
	return describe(m)
}

// clip shortens a value for an error message.
func clip(v []byte) string {
	if len(v) > 48 {
		return string(v[:48]) + "..."
	}
	return string(v)
}

// fetchReply runs cmd_kafka_fetch and returns the whole reply, next_offset
// included.
func fetchReply(ctx context.Context, c *client.Client, topic string, partition int32, offset int64) (*pb.KafkaFetchResp, error) {
	resp, err := c.Do(ctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaFetch{
		CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: topic, Partition: partition, Offset: offset},
	}})
	if err != nil {
		return nil, err
	}
	if resp.GetKafkaFetchResp() == nil {
		return nil, fmt.Errorf("unexpected reply %v", resp)
	}
	return resp.GetKafkaFetchResp(), nil
}

// problemList gathers the problems of concurrent checks and reports them
// once, a bounded number in full.
type problemList struct {
	mu    sync.Mutex
	items []string
}

func (p *problemList) add(items ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.items = append(p.items, items...)
}

// report fails t with the problems found, if any.
func (p *problemList) report(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.items) == 0 {
		return
	}
	shown := p.items
	if len(shown) > maxReported {
		shown = shown[:maxReported]
	}
	t.Errorf("%d problems:\n%s", len(p.items), strings.Join(shown, "\n"))
}

// eachOffset runs check for every offset of the log, its end included, a
// few at a time (pipelined on one session, as clients may).
func eachOffset(l *partitionLog, check func(offset int64)) {
	const inFlight = 4
	offsets := make(chan int64)
	var wg sync.WaitGroup
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for off := range offsets {
				check(off)
			}
		}()
	}
	for off := l.start; off <= l.end; off++ {
		offsets <- off
	}
	close(offsets)
	wg.Wait()
}

// fetchLoop reads the log from start to its end as a client does: each fetch
// at the offset the last reply said (next_offset, else last + 1).
func fetchLoop(ctx context.Context, c *client.Client, l *partitionLog, start int64, who string, p *problemList) {
	var got []*pb.KafkaMessage
	for off := start; off < l.end; {
		r, err := fetchReply(ctx, c, l.topic, l.partition, off)
		if err != nil {
			p.add(fmt.Sprintf("%s: fetch %s/%d at %d: %v", who, l.topic, l.partition, off, err))
			return
		}
		next, err := l.checkReply(off, r)
		got = append(got, r.GetMessages()...)
		if err != nil {
			p.add(who + ": " + err.Error())
			return
		}
		off = next
	}
	p.add(l.checkStream(who, start, got, true)...)
}

// subscribeAt subscribes to the log's partition from offset and checks the
// first push (or, with whole, every push up to the last data record).
func subscribeAt(ctx context.Context, c *client.Client, l *partitionLog, offset int64, whole bool, who string, p *problemList) {
	sub, err := c.Subscribe(ctx, &pb.CmdKafkaSubscribe{
		Topic: l.topic, Partitions: []int32{l.partition}, Start: &pb.CmdKafkaSubscribe_Offset{Offset: offset},
	})
	if err != nil {
		p.add(fmt.Sprintf("%s: subscribe to %s/%d at %d: %v", who, l.topic, l.partition, offset, err))
		return
	}
	defer sub.Unsubscribe(ctx)
	if len(sub.Starts) != 1 || sub.Starts[0].GetOffset() != offset {
		p.add(fmt.Sprintf("%s: subscription to %s/%d at %d starts at %v", who, l.topic, l.partition, offset, sub.Starts))
		return
	}
	i := l.from(offset)
	if i == len(l.records) {
		return // no data record to wait for
	}
	var got []*pb.KafkaMessage
	timeout := time.After(10 * time.Second)
	for len(got) == 0 || whole && got[len(got)-1].GetOffset() < l.lastOffset() {
		var resp *pb.PubSubResp
		select {
		case resp = <-sub.C():
		case <-timeout:
			p.add(fmt.Sprintf("%s: subscription to %s/%d at %d: %d records pushed, want up to offset %d", who, l.topic, l.partition, offset, len(got), l.lastOffset()))
			return
		}
		fr := resp.GetKafkaFetchResp()
		if fr == nil {
			p.add(fmt.Sprintf("%s: subscription to %s/%d at %d: push %v", who, l.topic, l.partition, offset, resp))
			return
		}
		cursor := offset
		if len(got) > 0 {
			cursor = got[len(got)-1].GetOffset() + 1
		}
		if err := l.checkPushNext(cursor, fr); err != nil {
			p.add(who + ": " + err.Error())
		}
		got = append(got, fr.GetMessages()...)
	}
	p.add(l.checkStream(who, offset, got, whole)...)
}

// checkEveryOffset reads the whole log through srv in two sessions, one
// after the other: a fetch and a subscription at every offset, fetch loops
// from the start and the middle, and a subscription to the end.
func checkEveryOffset(t *testing.T, srv *testkit.Server, l *partitionLog) {
	t.Helper()
	if len(l.records) == 0 {
		t.Fatalf("%s/%d holds no data record to check", l.topic, l.partition)
	}
	var p problemList
	for _, who := range []string{"first session", "second session"} {
		c := srv.Dial(t, "kafka")
		ctx := ctx(t)
		eachOffset(l, func(off int64) {
			r, err := fetchReply(ctx, c, l.topic, l.partition, off)
			if err != nil {
				p.add(fmt.Sprintf("%s: fetch %s/%d at %d: %v", who, l.topic, l.partition, off, err))
				return
			}
			if _, err = l.checkReply(off, r); err != nil {
				p.add(who + ": " + err.Error())
			}
		})
		fetchLoop(ctx, c, l, l.start, who+" fetch loop from the start", &p)
		fetchLoop(ctx, c, l, l.records[len(l.records)/2].Offset-1, who+" fetch loop from the middle", &p)
		eachOffset(l, func(off int64) { subscribeAt(ctx, c, l, off, false, who, &p) })
		subscribeAt(ctx, c, l, l.start, true, who+" subscription from the start", &p)
	}
	p.report(t)
}

// event is a JSON event of a few hundred bytes whose fields vary the way real
// events do.
type event struct {
	ID      int      `json:"id"`
	Type    string   `json:"type"`
	User    string   `json:"user"`
	Amount  float64  `json:"amount"`
	Tags    []string `json:"tags,omitempty"`
	Comment string   `json:"comment,omitempty"`
	Source  string   `json:"source"`
}

// jsonEvent returns the JSON value of event number i of batch name.
func jsonEvent(name string, i int) []byte {
	types := []string{"order.created", "order.paid", "cart.updated", "user.login", "shipment.sent"}
	e := event{
		ID:      i,
		Type:    types[i%len(types)],
		User:    fmt.Sprintf("user-%04d@example.com", (i*7919)%5000),
		Amount:  float64(i%997) * 1.25,
		Tags:    []string{"web", "eu-west", "campaign-" + fmt.Sprint(i%13)}[:i%4],
		Comment: strings.Repeat("customer asked for gift wrapping; ", i%6),
		Source:  name,
	}
	b, err := json.Marshal(e)
	if err != nil {
		panic(err)
	}
	return b
}

// producedRecord is what a producer was acknowledged for.
type producedRecord struct {
	offset int64
	value  []byte
}

// batchProducer writes batches to one partition of a kfake cluster.
type batchProducer struct {
	t         *testing.T
	cl        *kgo.Client
	topic     string
	partition int32
	name      string
	n         int
}

// newBatchProducer returns a producer whose every Flush writes one batch,
// compressed with codec when it makes the batch smaller. Extra options make
// it transactional.
func newBatchProducer(t *testing.T, brokers []string, topic string, partition int32, codec kgo.CompressionCodec, name string, opts ...kgo.Opt) *batchProducer {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(codec),
		kgo.ProducerLinger(time.Minute), // batches end at Flush
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &batchProducer{t: t, cl: cl, topic: topic, partition: partition, name: name}
}

// batch writes n JSON events as one batch; every third has no key, every
// fourth has headers. It returns what was acknowledged.
func (p *batchProducer) batch(n int) []producedRecord {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var (
		mu    sync.Mutex
		acked []producedRecord
		errs  []error
	)
	for range n {
		i := p.n
		p.n++
		r := &kgo.Record{Topic: p.topic, Partition: p.partition, Value: jsonEvent(p.name, i)}
		if i%3 != 0 {
			r.Key = fmt.Appendf(nil, "%s-key-%d", p.name, i%10)
		}
		if i%4 == 0 {
			r.Headers = []kgo.RecordHeader{{Key: "trace-id", Value: fmt.Appendf(nil, "%016x", i*2654435761)}, {Key: "empty"}}
		}
		p.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			acked = append(acked, producedRecord{r.Offset, r.Value})
		})
	}
	if err := p.cl.Flush(ctx); err != nil {
		p.t.Fatalf("flush: %v", err)
	}
	if len(errs) > 0 {
		p.t.Fatalf("produce: %v", errors.Join(errs...))
	}
	sort.Slice(acked, func(i, j int) bool { return acked[i].offset < acked[j].offset })
	return acked
}

// exactServer serves brokers with replies of a few events.
func exactServer(t *testing.T, brokers []string) *testkit.Server {
	return testkit.StartServer(t, testkit.ClusterYAML(brokers, fmt.Sprintf("    fetch_max_bytes: %d\n", exactFetchMaxBytes), ""), nil)
}

// codecs are the producers' batch compressions, none included.
var codecs = []struct {
	name  string
	codec kgo.CompressionCodec
}{
	{"none", kgo.NoCompression()},
	{"gzip", kgo.GzipCompression()},
	{"snappy", kgo.SnappyCompression()},
	{"lz4", kgo.Lz4Compression()},
	{"zstd", kgo.ZstdCompression()},
}

// produceEveryCodec writes batches of varied sizes with every codec to
// topic/partition and returns the last offset.
func produceEveryCodec(t *testing.T, brokers []string, topic string, partition int32, sizes []int) int64 {
	last := int64(-1)
	for _, c := range codecs {
		p := newBatchProducer(t, brokers, topic, partition, c.codec, c.name)
		for _, n := range sizes {
			acked := p.batch(n)
			last = acked[len(acked)-1].offset
		}
	}
	return last
}

func TestFetchAtEveryOffsetOfCompressedBatches(t *testing.T) {
	k := testkit.Kafka(t)
	if err := k.CreateTopic("events", 1, nil); err != nil {
		t.Fatal(err)
	}
	brokers := k.ListenAddrs()
	last := produceEveryCodec(t, brokers, "events", 0, []int{1, 9, 30, 3})
	l := readLog(t, brokers, "events", 0, last)
	if int64(len(l.records)) != last+1 {
		t.Fatalf("direct read holds %d records, want %d", len(l.records), last+1)
	}
	checkEveryOffset(t, exactServer(t, brokers), l)
}

func TestFetchSkipsControlRecordsAndAbortedTransactions(t *testing.T) {
	k := testkit.Kafka(t)
	if err := k.CreateTopic("txn", 1, nil); err != nil {
		t.Fatal(err)
	}
	brokers := k.ListenAddrs()
	plain := newBatchProducer(t, brokers, "txn", 0, kgo.SnappyCompression(), "plain")
	txn := newBatchProducer(t, brokers, "txn", 0, kgo.Lz4Compression(), "txn", kgo.TransactionalID("proof-txn"))
	ctx := ctx(t)
	transaction := func(commit bool, steps ...func()) {
		t.Helper()
		if err := txn.cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, step := range steps {
			step()
		}
		if err := txn.cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatalf("end transaction: %v", err)
		}
	}
	var last int64 // the last transactional record written
	txnBatch := func(n int) func() {
		return func() { acked := txn.batch(n); last = acked[len(acked)-1].offset }
	}
	plainBatch := func(n int) func() { return func() { plain.batch(n) } }

	plain.batch(4)
	transaction(true, txnBatch(6), txnBatch(3))                 // committed: data, then a marker
	transaction(false, txnBatch(5))                             // aborted: no data, a marker
	transaction(false, txnBatch(2), plainBatch(3), txnBatch(4)) // plain records inside an aborted transaction
	plain.batch(2)
	transaction(false, txnBatch(7)) // then 7 + 1 + 1 + 1 offsets without data in a row
	transaction(false, txnBatch(1))
	transaction(true, txnBatch(5)) // the log ends with a commit marker

	l := readLog(t, brokers, "txn", 0, last)
	if l.end != last+2 {
		t.Fatalf("log ends at %d, want the commit marker at %d and the end at %d", l.end, last+1, last+2)
	}
	if got, want := len(l.records), 4+6+3+3+2+5; got != want {
		t.Fatalf("direct read_committed read holds %d data records, want %d", got, want)
	}
	checkEveryOffset(t, exactServer(t, brokers), l)
}

func TestFetchAfterCompaction(t *testing.T) {
	k := testkit.Kafka(t)
	if err := k.CreateTopic("compacted", 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	brokers := k.ListenAddrs()
	p := newBatchProducer(t, brokers, "compacted", 0, kgo.ZstdCompression(), "compact")
	var last int64
	for _, n := range []int{12, 30, 3, 25, 8} {
		acked := p.batch(n)
		last = acked[len(acked)-1].offset
	}
	k.Compact()
	l := readLog(t, brokers, "compacted", 0, last)
	if int64(len(l.records)) > last/2 {
		t.Fatalf("compaction kept %d of %d records: nothing to test", len(l.records), last+1)
	}
	checkEveryOffset(t, exactServer(t, brokers), l)
}

func TestFetchAfterTheLogStartMoves(t *testing.T) {
	k := testkit.Kafka(t)
	if err := k.CreateTopic("truncated", 1, nil); err != nil {
		t.Fatal(err)
	}
	brokers := k.ListenAddrs()
	last := produceEveryCodec(t, brokers, "truncated", 0, []int{5, 12})
	srv := exactServer(t, brokers)
	before := readLog(t, brokers, "truncated", 0, last)
	// Sessions that read everything first leave whatever a cache keeps.
	warm := srv.Dial(t, "kafka")
	var p problemList
	fetchLoop(ctx(t), warm, before, 0, "warm-up fetch loop", &p)
	p.report(t)

	newStart := before.records[5+12+4].Offset // inside a gzip batch
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	res, err := kadm.NewClient(adm).DeleteRecords(ctx(t), kadm.Offsets{"truncated": {0: {Topic: "truncated", Partition: 0, At: newStart}}})
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}
	after := readLog(t, brokers, "truncated", 0, last)
	// The cache may answer from a check up to CacheCheckInterval old: the
	// documented bound on how late it sees the log start move.
	time.Sleep(kafka.CacheCheckInterval)
	if after.start != newStart {
		t.Fatalf("log starts at %d after deleting records before %d", after.start, newStart)
	}
	for _, c := range []*client.Client{warm, srv.Dial(t, "kafka")} {
		for _, off := range []int64{0, newStart - 5, newStart - 1} {
			msgs, err := c.Fetch(ctx(t), "truncated", 0, off)
			if err == nil || !strings.Contains(err.Error(), "OFFSET_OUT_OF_RANGE") {
				t.Errorf("fetch at %d, before the log start %d: got %d records, %v; want OFFSET_OUT_OF_RANGE", off, newStart, len(msgs), err)
			}
		}
		if _, err := c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "truncated", Partitions: []int32{0}, Start: &pb.CmdKafkaSubscribe_Offset{Offset: newStart - 1}}); err == nil || !strings.Contains(err.Error(), "OFFSET_OUT_OF_RANGE") {
			t.Errorf("subscribe at %d, before the log start %d: %v; want OFFSET_OUT_OF_RANGE", newStart-1, newStart, err)
		}
	}
	checkEveryOffset(t, srv, after)
}

func TestFetchAfterTheTopicIsRecreated(t *testing.T) {
	k := testkit.Kafka(t)
	if err := k.CreateTopic("recreated", 1, nil); err != nil {
		t.Fatal(err)
	}
	brokers := k.ListenAddrs()
	old := newBatchProducer(t, brokers, "recreated", 0, kgo.GzipCompression(), "old")
	old.batch(30)
	oldLast := old.batch(20)[19].offset
	srv := exactServer(t, brokers)
	warm := srv.Dial(t, "kafka")
	var p problemList
	fetchLoop(ctx(t), warm, readLog(t, brokers, "recreated", 0, oldLast), 0, "warm-up fetch loop", &p)
	p.report(t)
	// A fetch at the end leaves a reader of the partition behind.
	if _, err := fetchReply(ctx(t), warm, "recreated", 0, oldLast+1); err != nil {
		t.Fatal(err)
	}

	if err := k.DeleteTopic("recreated"); err != nil {
		t.Fatal(err)
	}
	if err := k.CreateTopic("recreated", 1, nil); err != nil {
		t.Fatal(err)
	}
	fresh := newBatchProducer(t, brokers, "recreated", 0, kgo.ZstdCompression(), "new")
	fresh.batch(15)
	last := fresh.batch(45)[44].offset
	l := readLog(t, brokers, "recreated", 0, last)
	// The cache may answer from a check up to CacheCheckInterval old: the
	// documented bound on how late it sees a topic deleted and created.
	time.Sleep(kafka.CacheCheckInterval)

	// The gateway may take a moment to see the new topic; it must never
	// answer with the old one's records meanwhile.
	ctx := ctx(t)
	for {
		r, err := fetchReply(ctx, warm, "recreated", 0, 0)
		if err == nil {
			if _, err := l.checkReply(0, r); err != nil {
				t.Fatalf("first fetch after the topic was recreated: %v", err)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the recreated topic is not served: %v", err)
		}
		t.Logf("fetch while the topic is recreated: %v", err)
		time.Sleep(50 * time.Millisecond) // polls a condition, no fixed wait
	}
	checkEveryOffset(t, srv, l)
}

func TestManySessionsReadOnePartitionAtOnce(t *testing.T) {
	k := testkit.Kafka(t)
	if err := k.CreateTopic("shared", 1, nil); err != nil {
		t.Fatal(err)
	}
	brokers := k.ListenAddrs()
	last := produceEveryCodec(t, brokers, "shared", 0, []int{40, 3, 70})
	l := readLog(t, brokers, "shared", 0, last)
	srv := exactServer(t, brokers)
	const sessions = 8
	var (
		p  problemList
		wg sync.WaitGroup
	)
	ctx := ctx(t)
	for i := range sessions {
		c := srv.Dial(t, "kafka")
		start := l.records[i*len(l.records)/sessions].Offset
		wg.Add(2)
		go func() {
			defer wg.Done()
			fetchLoop(ctx, c, l, start, fmt.Sprintf("session %d fetch loop from %d", i, start), &p)
		}()
		go func() {
			defer wg.Done()
			subscribeAt(ctx, c, l, start+int64(i), true, fmt.Sprintf("session %d subscription from %d", i, start+int64(i)), &p)
		}()
	}
	wg.Wait()
	p.report(t)
}

// The checks above must find what they look for: a log with a gap at 3
// (compacted away) and a stream that misses, repeats and invents records.
func TestLogChecksFindGapsDuplicatesAndForeignRecords(t *testing.T) {
	l := &partitionLog{topic: "t", partition: 1, start: 0, end: 7}
	for _, off := range []int64{0, 1, 2, 4, 5, 6} {
		l.records = append(l.records, &kgo.Record{Offset: off, Value: fmt.Appendf(nil, "v%d", off)})
	}
	msg := func(off int64, value string) *pb.KafkaMessage {
		return &pb.KafkaMessage{Offset: off, Value: []byte(value), Timestamp: time.Time{}.UnixMilli()}
	}
	whole := []*pb.KafkaMessage{msg(0, "v0"), msg(1, "v1"), msg(2, "v2"), msg(4, "v4"), msg(5, "v5"), msg(6, "v6")}
	if got := l.checkStream("reader", 0, whole, true); len(got) != 0 {
		t.Fatalf("the whole log: %v", got)
	}
	if got := l.checkStream("reader", 3, whole[3:], true); len(got) != 0 {
		t.Fatalf("the log from the compacted offset 3: %v", got)
	}
	for _, tc := range []struct {
		name string
		got  []*pb.KafkaMessage
		want string
	}{
		{"gap", []*pb.KafkaMessage{msg(0, "v0"), msg(4, "v4"), msg(5, "v5"), msg(6, "v6")}, "offsets 1-2 (2 records"},
		{"duplicate", []*pb.KafkaMessage{msg(0, "v0"), msg(1, "v1"), msg(1, "v1"), msg(2, "v2"), msg(4, "v4"), msg(5, "v5"), msg(6, "v6")}, "offset 1 again after 1"},
		{"wrong value", []*pb.KafkaMessage{msg(0, "v0"), msg(1, "old"), msg(2, "v2"), msg(4, "v4"), msg(5, "v5"), msg(6, "v6")}, `offset 1: value differs from byte 0: got ..."old", Kafka holds ..."v1"`},
		{"a record that is not data", []*pb.KafkaMessage{msg(0, "v0"), msg(1, "v1"), msg(2, "v2"), msg(3, "aborted"), msg(4, "v4"), msg(5, "v5"), msg(6, "v6")}, "offset 3 (value \"aborted\") is not a data record"},
		{"stopped early", whole[:4], "stopped after offset 4"},
	} {
		got := l.checkStream("reader", 0, tc.got, true)
		if len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), tc.want) {
			t.Errorf("%s: got %q, want a problem with %q", tc.name, got, tc.want)
		}
	}

	for _, tc := range []struct {
		name   string
		offset int64
		reply  *pb.KafkaFetchResp
		next   int64
		want   string // "" for a valid reply
	}{
		{"from a data record", 1, &pb.KafkaFetchResp{Messages: whole[1:3]}, 3, ""},
		{"past the gap with next_offset", 3, &pb.KafkaFetchResp{Messages: whole[3:4], NextOffset: 5}, 5, ""},
		{"empty before the gap's end, with next_offset", 3, &pb.KafkaFetchResp{NextOffset: 4}, 4, ""},
		{"at the end", 7, &pb.KafkaFetchResp{}, 7, ""},
		{"past the gap without next_offset", 3, &pb.KafkaFetchResp{Messages: whole[3:4]}, 0, "carries no next_offset"},
		{"empty before the end", 3, &pb.KafkaFetchResp{}, 0, "the client is stuck"},
		{"skipping a record", 1, &pb.KafkaFetchResp{Messages: whole[2:3], NextOffset: 3}, 0, "want offset 1"},
		{"next_offset past a data record", 1, &pb.KafkaFetchResp{Messages: whole[1:2], NextOffset: 4}, 0, "next_offset 4 outside [2, 2]"},
	} {
		next, err := l.checkReply(tc.offset, tc.reply)
		switch {
		case tc.want == "" && (err != nil || next != tc.next):
			t.Errorf("%s: got next %d, %v; want %d", tc.name, next, err, tc.next)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// next_offset is "the offset to ask for next: the last returned offset + 1,
// or further on past offsets that hold no data record; 0 when not known".
// After records it is always known, in fetch replies and in pushes alike.
func TestRepliesWithRecordsCarryNextOffset(t *testing.T) {
	k := testkit.Kafka(t)
	if err := k.CreateTopic("next", 1, nil); err != nil {
		t.Fatal(err)
	}
	brokers := k.ListenAddrs()
	p := newBatchProducer(t, brokers, "next", 0, kgo.SnappyCompression(), "next")
	p.batch(20)
	last := p.batch(20)[19].offset
	l := readLog(t, brokers, "next", 0, last)
	c := exactServer(t, brokers).Dial(t, "kafka")
	ctx := ctx(t)
	for _, off := range []int64{0, 7, 20, last} {
		r, err := fetchReply(ctx, c, "next", 0, off)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.checkReply(off, r); err != nil {
			t.Fatal(err)
		}
		if msgs := r.GetMessages(); r.GetNextOffset() != msgs[len(msgs)-1].GetOffset()+1 {
			t.Errorf("fetch at %d: %d records up to %d, next_offset %d", off, len(msgs), msgs[len(msgs)-1].GetOffset(), r.GetNextOffset())
		}
	}
	sub, err := c.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "next", Partitions: []int32{0}, Start: &pb.CmdKafkaSubscribe_Offset{Offset: 3}})
	if err != nil {
		t.Fatal(err)
	}
	for next := int64(3); next <= last; {
		select {
		case resp := <-sub.C():
			msgs := resp.GetKafkaFetchResp().GetMessages()
			if len(msgs) == 0 {
				t.Fatalf("push without records: %v", resp)
			}
			if n := resp.GetKafkaFetchResp().GetNextOffset(); n != msgs[len(msgs)-1].GetOffset()+1 {
				t.Errorf("push of %d records up to %d: next_offset %d", len(msgs), msgs[len(msgs)-1].GetOffset(), n)
			}
			next = msgs[len(msgs)-1].GetOffset() + 1
		case <-ctx.Done():
			t.Fatalf("pushes stopped before offset %d", next)
		}
	}
}
