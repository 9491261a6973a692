package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/server"
)

// scopedServer serves cluster "kafka" as the standalone server does, but
// each session reads with the record scope its upgrade names: the records
// whose header tenant is one of the tenant query parameters
// (/kafka?tenant=a), or every record when it names none. It stands in for
// the identity rules that install scopes with Policy.WithReadScope.
type scopedServer struct {
	addr    string
	pool    *kafka.Pool
	cluster *config.KafkaCluster
}

func startScopedServer(t testing.TB, brokers []string, clusterExtra string, poolOpts ...kafka.PoolOption) *scopedServer {
	t.Helper()
	doc, err := config.Parse([]byte(testkit.ClusterYAML(brokers, clusterExtra, "")))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	s := &scopedServer{
		pool:    kafka.NewPool(append([]kafka.PoolOption{kafka.Logger(log)}, poolOpts...)...),
		cluster: doc.KafkaClusters["kafka"],
	}
	sessions := server.New(s, server.OptionsFrom(doc, log))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	go sessions.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sessions.Shutdown(ctx)
		s.pool.Close()
	})
	return s
}

// Resolve binds the session to the cluster with the scope of its tenants.
func (s *scopedServer) Resolve(r *http.Request) (server.Route, error) {
	var scope kafka.Scope
	for _, tenant := range r.URL.Query()["tenant"] {
		scope = append(scope, tenantMatch(tenant))
	}
	policy := kafka.NewPolicy(s.cluster).WithReadScope(func(string) kafka.Scope { return scope })
	return server.KafkaRoute(s.pool, "kafka", s.cluster, policy, slog.New(slog.DiscardHandler))
}

// tenantMatch is the condition that the header tenant is tenant.
func tenantMatch(tenant string) kafka.RecordMatch {
	return kafka.RecordMatch{Headers: []kgo.RecordHeader{{Key: "tenant", Value: []byte(tenant)}}}
}

// Dial connects a client to path (e.g. "kafka?tenant=a"); it is closed with
// the test.
func (s *scopedServer) Dial(t testing.TB, path string) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx(t), "ws://"+s.addr+"/"+path, client.Options{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sharedCluster returns the shared client the server's sessions use.
func (s *scopedServer) sharedCluster(t testing.TB) *kafka.Cluster {
	t.Helper()
	k, err := s.pool.Acquire(s.cluster)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Release)
	return k
}

// tenantRecord is a record of tenant (no tenant header when empty) with key.
func tenantRecord(tenant, key, value string) testkit.Record {
	r := testkit.Record{Key: key, Value: value}
	if tenant != "" {
		r.Headers = []kgo.RecordHeader{{Key: "tenant", Value: []byte(tenant)}}
	}
	return r
}

// tenantLog is what a test wrote to a partition: the offsets of each
// tenant's records and the offset after the last record.
type tenantLog struct {
	byTenant map[string][]int64
	end      int64
}

// produce appends recs to topic/partition, one produce request per call,
// in as few batches as the producer makes.
func (l *tenantLog) produce(t testing.TB, k *kfake.Cluster, topic string, partition int32, recs []testkit.Record) {
	t.Helper()
	offsets := testkit.Produce(t, k.ListenAddrs(), topic, partition, recs, kgo.ProducerLinger(50*time.Millisecond))
	if l.byTenant == nil {
		l.byTenant = make(map[string][]int64)
	}
	for i, r := range recs {
		tenant := ""
		if len(r.Headers) > 0 {
			tenant = string(r.Headers[0].Value)
		}
		l.byTenant[tenant] = append(l.byTenant[tenant], offsets[i])
		l.end = max(l.end, offsets[i]+1)
	}
}

// of returns the offsets of the tenants' records, in order, from offset
// from on.
func (l *tenantLog) of(from int64, tenants ...string) []int64 {
	var out []int64
	for _, tenant := range tenants {
		for _, o := range l.byTenant[tenant] {
			if o >= from {
				out = append(out, o)
			}
		}
	}
	slices.Sort(out)
	return out
}

// runOf returns n records of tenant.
func runOf(n int, tenant string) []testkit.Record {
	recs := make([]testkit.Record, n)
	for i := range recs {
		recs[i] = tenantRecord(tenant, fmt.Sprintf("k%d", i%3), fmt.Sprintf("%s-%d", tenant, i))
	}
	return recs
}

// scopedFetchLoop fetches topic/partition 0 from offset from, following
// next_offset, until it reaches end; it returns the offsets of the records
// it got and the number of fetches. Every fetch must be answered within
// fetch_max_wait: none may wait at the broker before the end of the log.
func scopedFetchLoop(t *testing.T, c *client.Client, topic string, from, end int64, filter *pb.KafkaFilter, maxWait time.Duration) (offsets []int64, fetches int) {
	t.Helper()
	for next := from; next < end; fetches++ {
		fctx, cancel := context.WithTimeout(ctx(t), maxWait)
		resp, err := c.Do(fctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaFetch{CmdKafkaFetch: &pb.CmdKafkaFetch{
			Topic: topic, Offset: next, Filter: filter,
		}}})
		cancel()
		if err != nil {
			t.Fatalf("fetch at %d (after %d fetches): %v", next, fetches, err)
		}
		fr := resp.GetKafkaFetchResp()
		for _, m := range fr.GetMessages() {
			if m.GetOffset() < next {
				t.Fatalf("fetch at %d returned offset %d", next, m.GetOffset())
			}
			offsets = append(offsets, m.GetOffset())
			next = m.GetOffset() + 1
		}
		if fr.GetNextOffset() < next {
			t.Fatalf("fetch at %d: next_offset %d is before the records returned", next, fr.GetNextOffset())
		}
		if fr.GetNextOffset() == next && len(fr.GetMessages()) == 0 {
			t.Fatalf("fetch at %d, before the end %d, returned nothing and no way on", next, end)
		}
		next = fr.GetNextOffset()
	}
	return offsets, fetches
}

// A tenant's fetch loop over a partition where 5,000 records of another
// tenant lie between its own records sees exactly its records, and each
// fetch is answered at once: next_offset carries it past the records it
// does not see, and no fetch before the end of the log waits (here
// fetch_max_wait is longer than the deadline of each fetch).
func TestScopedFetchLoopSkipsALongRunOfInvisibleRecords(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	srv := startScopedServer(t, k.ListenAddrs(), "    fetch_max_wait: 20s\n    request_timeout: 30s\n    fetch_max_bytes: 8192\n")
	var log tenantLog
	log.produce(t, k, "t", 0, runOf(3, "a"))
	log.produce(t, k, "t", 0, runOf(5000, "b"))
	log.produce(t, k, "t", 0, runOf(2, "a"))
	log.produce(t, k, "t", 0, runOf(5000, "b"))
	log.produce(t, k, "t", 0, runOf(1, "a"))
	log.produce(t, k, "t", 0, runOf(2000, "b")) // the log ends in records a does not see

	const fetchDeadline = 10 * time.Second // well below fetch_max_wait
	tenantA := srv.Dial(t, "kafka?tenant=a")
	got, fetches := scopedFetchLoop(t, tenantA, "t", 0, log.end, nil, fetchDeadline)
	if want := log.of(0, "a"); !slices.Equal(got, want) {
		t.Fatalf("tenant a fetched offsets %v, want %v", got, want)
	}
	// Each fetch reads on over several replies' worth of records it does
	// not see: far fewer fetches than the 8 KiB replies of every record.
	all, allFetches := scopedFetchLoop(t, srv.Dial(t, "kafka"), "t", 0, log.end, nil, fetchDeadline)
	if len(all) != int(log.end) {
		t.Fatalf("an unscoped loop fetched %d records, want %d", len(all), log.end)
	}
	if fetches*2 > allFetches {
		t.Errorf("tenant a needed %d fetches, an unscoped loop %d: the fetches do not read on past invisible records", fetches, allFetches)
	}
	// The loop is again at the records of b (cached now): a fetch in the
	// middle of them answers with none and a next_offset past them.
	resp, err := tenantA.Do(ctx(t), &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaFetch{CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: "t", Offset: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	if fr := resp.GetKafkaFetchResp(); len(fr.GetMessages()) != 0 || fr.GetNextOffset() <= 3 {
		t.Errorf("fetch at the first invisible record: %d records, next_offset %d", len(fr.GetMessages()), fr.GetNextOffset())
	}
	t.Logf("tenant a: %d fetches; unscoped: %d fetches", fetches, allFetches)
}

// Client filters (key, headers) apply after the scope, in fetch replies:
// a filter only narrows what the scope lets through.
func TestFetchFiltersApplyAfterTheScope(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	srv := startScopedServer(t, k.ListenAddrs(), "")
	recs := []testkit.Record{
		tenantRecord("a", "k1", "0"),
		tenantRecord("b", "k1", "1"),
		tenantRecord("a", "k2", "2"),
		tenantRecord("", "k1", "3"),
		{Key: "k1", Value: "4", Headers: []kgo.RecordHeader{{Key: "tenant", Value: []byte("a")}, {Key: "kind", Value: []byte("x")}}},
		{Key: "k2", Value: "5", Headers: []kgo.RecordHeader{{Key: "kind", Value: []byte("y")}, {Key: "tenant", Value: []byte("a")}, {Key: "kind", Value: []byte("x")}}},
	}
	testkit.Produce(t, k.ListenAddrs(), "t", 0, recs)
	kindX := []*pb.KafkaHeader{{Key: "kind", Value: []byte("x")}}
	for _, tc := range []struct {
		name   string
		path   string
		filter *pb.KafkaFilter
		want   []int64
	}{
		{"no scope, key", "kafka", &pb.KafkaFilter{Key: []byte("k1")}, []int64{0, 1, 3, 4}},
		{"no scope, header", "kafka", &pb.KafkaFilter{Headers: []*pb.KafkaHeader{{Key: "tenant", Value: []byte("b")}}}, []int64{1}},
		{"scope a", "kafka?tenant=a", nil, []int64{0, 2, 4, 5}},
		{"scope a, key", "kafka?tenant=a", &pb.KafkaFilter{Key: []byte("k1")}, []int64{0, 4}},
		{"scope a, key and header", "kafka?tenant=a", &pb.KafkaFilter{Key: []byte("k1"), Headers: kindX}, []int64{4}},
		{"scope a, a repeated header", "kafka?tenant=a", &pb.KafkaFilter{Headers: kindX}, []int64{4, 5}},
		{"scope a, filter of b", "kafka?tenant=a", &pb.KafkaFilter{Headers: []*pb.KafkaHeader{{Key: "tenant", Value: []byte("b")}}}, nil},
		{"scope a or b", "kafka?tenant=a&tenant=b", &pb.KafkaFilter{Key: []byte("k1")}, []int64{0, 1, 4}},
		{"empty filter", "kafka", &pb.KafkaFilter{}, []int64{0, 1, 2, 3, 4, 5}},
	} {
		got, _ := scopedFetchLoop(t, srv.Dial(t, tc.path), "t", 0, int64(len(recs)), tc.filter, 10*time.Second)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: fetched %v, want %v", tc.name, got, tc.want)
		}
	}
}

// pushes reads sub's pushes until it has records up to end (next_offset
// reached end) and returns the offsets of the records and how many pushes
// carried none. Pushes must come in order, with no record twice.
func pushesUntil(t *testing.T, sub *client.Subscription, from, end int64) (offsets []int64, empty int) {
	t.Helper()
	next := from
	for next < end {
		select {
		case resp, ok := <-sub.C():
			if !ok {
				t.Fatalf("the subscription ended at %d, before %d", next, end)
			}
			fr := resp.GetKafkaFetchResp()
			if fr == nil {
				t.Fatalf("unexpected push %v", resp)
			}
			for _, m := range fr.GetMessages() {
				if m.GetOffset() < next {
					t.Fatalf("offset %d pushed after next %d: a duplicate", m.GetOffset(), next)
				}
				offsets = append(offsets, m.GetOffset())
				next = m.GetOffset() + 1
			}
			if len(fr.GetMessages()) == 0 {
				empty++
			}
			if fr.GetNextOffset() < next {
				t.Fatalf("next_offset %d before the records pushed (%d)", fr.GetNextOffset(), next)
			}
			next = fr.GetNextOffset()
		case <-ctx(t).Done():
			t.Fatalf("pushes stopped at %d, want %d", next, end)
		}
	}
	return offsets, empty
}

// Subscriptions push only what their scope and filter let through, from
// the earliest offset, from the latest, and on resuming from the last
// next_offset pushed: every visible record exactly once, in order, and the
// client's position carried past the long runs of records it does not see.
func TestScopedSubscriptionsFromEarliestLatestAndResume(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	srv := startScopedServer(t, k.ListenAddrs(), "")
	var log tenantLog
	log.produce(t, k, "t", 0, runOf(3, "a"))
	log.produce(t, k, "t", 0, runOf(5000, "b"))
	log.produce(t, k, "t", 0, runOf(2, "a"))
	log.produce(t, k, "t", 0, runOf(3000, "b"))

	earliest := &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}, Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}}
	a := srv.Dial(t, "kafka?tenant=a")
	subA, err := a.Subscribe(ctx(t), earliest)
	if err != nil {
		t.Fatal(err)
	}
	filtered := srv.Dial(t, "kafka?tenant=a")
	subKey, err := filtered.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0},
		Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}, Filter: &pb.KafkaFilter{Key: []byte("k1")}})
	if err != nil {
		t.Fatal(err)
	}
	latest, err := srv.Dial(t, "kafka?tenant=b").Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}})
	if err != nil {
		t.Fatal(err)
	}
	// The subscriptions' positions go past the run of b at the end of the
	// log, with a push of tenant a's records or one without records.
	got, _ := pushesUntil(t, subA, 0, log.end)
	if want := log.of(0, "a"); !slices.Equal(got, want) {
		t.Fatalf("tenant a from earliest: %v, want %v", got, want)
	}
	gotKey, _ := pushesUntil(t, subKey, 0, log.end)
	if want := []int64{1, 5004}; !slices.Equal(gotKey, want) {
		t.Fatalf("tenant a, key k1: %v, want %v", gotKey, want)
	}

	start := log.end
	log.produce(t, k, "t", 0, runOf(4, "b"))
	log.produce(t, k, "t", 0, runOf(500, "a"))
	log.produce(t, k, "t", 0, runOf(3, "b"))
	gotB, _ := pushesUntil(t, latest, start, log.end)
	if want := log.of(start, "b"); !slices.Equal(gotB, want) {
		t.Fatalf("tenant b from latest: %v, want %v", gotB, want)
	}
	got, _ = pushesUntil(t, subA, start, log.end)
	if want := log.of(start, "a"); !slices.Equal(got, want) {
		t.Fatalf("tenant a, tailing: %v, want %v", got, want)
	}

	// A client that goes away resumes from its last next_offset and gets
	// the rest exactly once.
	a.Close()
	resumeAt := log.end
	log.produce(t, k, "t", 0, runOf(1000, "b"))
	log.produce(t, k, "t", 0, runOf(2, "a"))
	resumed, err := srv.Dial(t, "kafka?tenant=a").Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Offsets: map[int32]int64{0: resumeAt}})
	if err != nil {
		t.Fatal(err)
	}
	got, _ = pushesUntil(t, resumed, resumeAt, log.end)
	if want := log.of(resumeAt, "a"); !slices.Equal(got, want) {
		t.Fatalf("tenant a resumed at %d: %v, want %v", resumeAt, got, want)
	}
}

// A subscription whose view sees none of a stream of records is told its
// position, partition by partition, now and then, never more often than
// PositionPushInterval: a quiet tenant of a busy topic is not flooded with
// empty pushes.
func TestPositionPushesAreFewWhileNothingIsVisible(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(2, "t"))
	srv := startScopedServer(t, k.ListenAddrs(), "")
	sub, err := srv.Dial(t, "kafka?tenant=a").Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	logs := make([]tenantLog, 2)
	for i := range 30 {
		logs[i%2].produce(t, k, "t", int32(i%2), runOf(20, "b"))
	}
	next, empty := map[int32]int64{}, map[int32]int{}
	for next[0] < logs[0].end || next[1] < logs[1].end {
		select {
		case resp := <-sub.C():
			fr := resp.GetKafkaFetchResp()
			p := fr.GetPartition()
			if fr == nil || fr.GetTopic() != "t" || p < 0 || p > 1 || len(fr.GetMessages()) > 0 || fr.GetNextOffset() <= next[p] {
				t.Fatalf("push %v after next_offset %v; want a position push of partition 0 or 1 past it", resp, next)
			}
			next[p] = fr.GetNextOffset()
			empty[p]++
		case <-ctx(t).Done():
			t.Fatalf("positions %v, want %d and %d", next, logs[0].end, logs[1].end)
		}
	}
	elapsed := time.Since(began)
	for p, n := range empty {
		if limit := 1 + int(elapsed/kafka.PositionPushInterval); n > limit {
			t.Fatalf("partition %d: %d position pushes in %v, more than one per %v", p, n, elapsed, kafka.PositionPushInterval)
		}
	}
	logs[1].produce(t, k, "t", 1, runOf(1, "a"))
	if got, _ := pushesUntil(t, sub, logs[1].end-1, logs[1].end); !slices.Equal(got, logs[1].of(0, "a")) {
		t.Fatalf("then tenant a's record: %v", got)
	}
}

// Subscribers of one view (scope and client filter) share one encoding of
// each push, whatever their number; subscribers of other views get their
// own, even where they see the same records. A scoped subscription
// costs no broker fetch of its own: all views tail the partition's one
// shared stream.
func TestSubscribersOfOneViewShareOneEncodingAndTheFetchStream(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	var reqs requestCounter
	srv := startScopedServer(t, k.ListenAddrs(), "", kafka.ClientOptions(kgo.WithHooks(&reqs)))
	views := []struct {
		path     string
		filter   *pb.KafkaFilter
		sessions int
		tenants  []string // whose records the view sees
	}{
		{"kafka?tenant=a", nil, 100, []string{"a"}},
		{"kafka?tenant=b", nil, 10, []string{"b"}},
		{"kafka", &pb.KafkaFilter{Headers: []*pb.KafkaHeader{{Key: "tenant", Value: []byte("b")}}}, 10, []string{"b"}},
		{"kafka", nil, 10, []string{"a", "b", ""}},
	}
	type subscriber struct {
		sub     *client.Subscription
		tenants []string
	}
	var subs []subscriber
	for _, v := range views {
		for range v.sessions {
			sub, err := srv.Dial(t, v.path).Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}, Filter: v.filter})
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, subscriber{sub, v.tenants})
		}
	}
	before := reqs.load(kmsg.Fetch)
	var log tenantLog
	const batches = 8
	for b := range batches {
		log.produce(t, k, "t", 0, append(runOf(3, "a"), append(runOf(2, "b"), tenantRecord("", "k", fmt.Sprint(b)))...))
	}
	type push struct{ first, n, next int64 }
	distinct := make([]map[push]bool, len(views))
	var mu sync.Mutex
	var wg sync.WaitGroup
	i := 0
	for v, view := range views {
		distinct[v] = map[push]bool{}
		for range view.sessions {
			s := subs[i]
			i++
			wg.Add(1)
			go func() {
				defer wg.Done()
				var got []int64
				for next := int64(0); next < log.end; {
					select {
					case resp := <-s.sub.C():
						fr := resp.GetKafkaFetchResp()
						msgs := fr.GetMessages()
						if len(msgs) > 0 {
							mu.Lock()
							distinct[v][push{msgs[0].GetOffset(), int64(len(msgs)), fr.GetNextOffset()}] = true
							mu.Unlock()
						}
						for _, m := range msgs {
							got = append(got, m.GetOffset())
						}
						next = fr.GetNextOffset()
					case <-ctx(t).Done():
						t.Errorf("%s %v: pushes stopped at %d of %d", view.path, view.filter, next, log.end)
						return
					}
				}
				if want := log.of(0, s.tenants...); !slices.Equal(got, want) {
					t.Errorf("%s %v: pushed %v, want %v", view.path, view.filter, got, want)
				}
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	pushes := 0
	for v := range views {
		pushes += len(distinct[v])
		if len(distinct[v]) > 2*batches {
			t.Errorf("%s %v: %d distinct pushes for %d batches", views[v].path, views[v].filter, len(distinct[v]), batches)
		}
	}
	if n := kafka.EncodedRecordPushes(srv.sharedCluster(t)); n != pushes {
		t.Errorf("%d encodings for %d distinct pushes of %d views to %d sessions; want one per distinct push", n, pushes, len(views), len(subs))
	}
	// Sessions each fetching would make at least sessions*batches fetches;
	// the shared stream makes about one per batch plus one per idle wait
	// of its reader (a tenth of a second), fewer than one per session
	// unless the machine stalls the test for seconds.
	if used := reqs.load(kmsg.Fetch) - before; used >= int64(len(subs)) {
		t.Errorf("%d broker fetches for %d scoped and unscoped sessions and %d batches: the stream is not shared", used, len(subs), batches)
	}
}

// Members of a group whose scope sees one tenant's records are pushed
// exactly those records, each once, while members join and leave: a member
// commits the offset after the last record it processed, and the next owner
// of a partition goes on from there.
func TestScopedGroupMembersGetTheirRecordsOnce(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(4, "events"))
	srv := startScopedServer(t, k.ListenAddrs(), "    groups: ['app']\n", kafka.ClientOptions(kgo.HeartbeatInterval(100*time.Millisecond)))
	logs := make([]tenantLog, 4)
	produce := func() {
		for p := range logs {
			logs[p].produce(t, k, "events", int32(p), append(runOf(2, "a"), append(runOf(300, "b"), tenantRecord("", "k", "none"))...))
		}
	}
	visible := func() int {
		n := 0
		for p := range logs {
			n += len(logs[p].of(0, "a"))
		}
		return n
	}
	seen := newSeenRecords()
	produce()
	m1 := joinGroup(t, srv.Dial(t, "kafka?tenant=a"), "m1", "app", "events", seen)
	seen.await(t, visible())
	joined := time.Now()
	m2 := joinGroup(t, srv.Dial(t, "kafka?tenant=a"), "m2", "app", "events", seen)
	awaitSplit(t, 4, m1, m2)
	// m1's pushes end before records it does not see: the revocation
	// waits for its commit of the offset after its last record, which
	// comes at once, not for RevokeCommitTimeout.
	if took := time.Since(joined); took >= kafka.RevokeCommitTimeout {
		t.Errorf("the hand-over took %v: the revocation waited for a commit the member could not know to make", took)
	}
	t.Logf("hand-over in %v", time.Since(joined))
	produce()
	seen.await(t, visible())
	m1.leave(t)
	produce()
	seen.await(t, visible())

	seen.mu.Lock()
	defer seen.mu.Unlock()
	for p := range logs {
		var got []int64
		for o := range seen.seen[int32(p)] {
			got = append(got, o)
		}
		slices.Sort(got)
		if want := logs[p].of(0, "a"); !slices.Equal(got, want) {
			t.Errorf("partition %d: the members processed %v, want %v", p, got, want)
		}
	}
}

// A group push holds the records the member sees of one poll and goes on
// past the records it does not see that follow them; a filter on a group
// subscription applies after the scope.
func TestGroupPushGoesOnPastRecordsTheMemberDoesNotSee(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "events"))
	srv := startScopedServer(t, k.ListenAddrs(), "    groups: ['app']\n")
	var log tenantLog
	log.produce(t, k, "events", 0, []testkit.Record{tenantRecord("a", "k1", "0"), tenantRecord("a", "k2", "1"), tenantRecord("b", "k1", "2"), tenantRecord("b", "k1", "3")})
	sub, err := srv.Dial(t, "kafka?tenant=a").Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "events", Group: "app",
		Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}, Filter: &pb.KafkaFilter{Key: []byte("k1")}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case resp := <-sub.C():
			fr := resp.GetKafkaFetchResp()
			if fr == nil {
				continue // the assignment
			}
			if len(fr.GetMessages()) != 1 || fr.GetMessages()[0].GetOffset() != 0 || fr.GetNextOffset() != log.end {
				t.Fatalf("push %v, want record 0 with next_offset %d", fr, log.end)
			}
			return
		case <-ctx(t).Done():
			t.Fatal("no push")
		}
	}
}
