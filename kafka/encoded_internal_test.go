package kafka

import (
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
)

func windowRecords(n, size int) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Offset: int64(i), Value: make([]byte, size)}
	}
	return recs
}

// replyOf is a reply of recs that goes on after the last.
func replyOf(recs []*kgo.Record) *reply {
	return &reply{records: recs, next: recs[len(recs)-1].Offset + 1}
}

func TestWindowPushIsEncodedOnceAndDecodesToItsRecords(t *testing.T) {
	var p encodedPushes
	recs := windowRecords(3, 10)
	a, err := p.encode("t", 2, 0, replyOf(recs), keyedView{}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.encode("t", 2, 0, replyOf(recs), keyedView{}, 1<<20)
	if a != b {
		t.Fatal("the same records were encoded twice")
	}
	if c, _ := p.encode("t", 2, 0, replyOf(recs[:2]), keyedView{}, 1<<20); c == a {
		t.Fatal("a push of fewer records shares the longer one's encoding")
	}
	if c, _ := p.encode("t", 2, 0, &reply{records: recs, next: 9}, keyedView{}, 1<<20); c == a {
		t.Fatal("a push with another next_offset shares the encoding")
	}
	want, _ := proto.Marshal(new(messageReply).of("t", 2, recs, 3))
	var resp pb.PubSubResp
	if err := proto.Unmarshal(want, &resp); err != nil || len(resp.GetKafkaFetchResp().GetMessages()) != 3 {
		t.Fatalf("reference push: %v", err)
	}
	if a.e.Len() != len(want) {
		t.Fatalf("encoded push has %d bytes, the push %d", a.e.Len(), len(want))
	}
}

func TestEncodedPushesStayWithinTheirBounds(t *testing.T) {
	var p encodedPushes
	for range 3 * maxEncodedPushes {
		if _, err := p.encode("t", 0, 0, replyOf(windowRecords(1, 100)), keyedView{}, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.byKey) != maxEncodedPushes || len(p.order) != maxEncodedPushes {
		t.Fatalf("%d pushes kept, bound %d", len(p.byKey), maxEncodedPushes)
	}
	for range 10 {
		p.encode("t", 0, 0, replyOf(windowRecords(1, 1000)), keyedView{}, 2500)
	}
	if p.bytes > 2500+1100 || len(p.byKey) > 3 {
		t.Fatalf("%d pushes of %d bytes kept, byte bound 2500", len(p.byKey), p.bytes)
	}
}

// Pushes encoded at once by many subscribers, some evicted while they are
// encoded, leave the byte count equal to what is kept.
func TestEncodedPushesCountOnlyWhatTheyKeepUnderConcurrency(t *testing.T) {
	var p encodedPushes
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				recs := windowRecords(1+(g+i)%3, 100)
				if _, err := p.encode("t", 0, 0, replyOf(recs), keyedView{}, 2000); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	kept := 0
	for _, ep := range p.byKey {
		kept += ep.bytes
	}
	if p.bytes != kept || p.bytes > 2000 {
		t.Fatalf("the pushes count %d bytes, those kept hold %d (bound 2000)", p.bytes, kept)
	}
}

// tenantRecords returns n records from offset 0 whose header tenant takes
// the tenants in turn.
func tenantRecords(n int, tenants ...string) []*kgo.Record {
	recs := windowRecords(n, 10)
	for i, r := range recs {
		r.Headers = []kgo.RecordHeader{{Key: "tenant", Value: []byte(tenants[i%len(tenants)])}}
	}
	return recs
}

func tenantView(tenant string) keyedView {
	return keyed(View{Scope: Scope{{Headers: []kgo.RecordHeader{{Key: "tenant", Value: []byte(tenant)}}}}})
}

// A push of a scoped view holds the records the view sees, is found by
// where it starts (for subscribers of that view and record bound only),
// and is forgotten there when it is evicted; a view that sees none of the
// records gets no encoding but is found too, so its subscribers move on
// without reading the records again.
func TestScopedPushesHoldTheirRecordsAndAreFoundWhereTheyStart(t *testing.T) {
	var p encodedPushes
	recs := tenantRecords(6, "a", "b")
	out := &reply{records: recs, next: 6, maxRecords: 100}
	a := tenantView("a")
	ep, err := p.encode("t", 0, 0, out, a, 1<<20)
	if err != nil || ep.e == nil {
		t.Fatalf("push of tenant a: %v", err)
	}
	// The end-to-end tests read the pushes; here their size tells them apart.
	want, _ := proto.Marshal(new(messageReply).of("t", 0, []*kgo.Record{recs[0], recs[2], recs[4]}, 6))
	if ep.e.Len() != len(want) || ep.next != 6 {
		t.Fatalf("tenant a's push has %d bytes and next %d; its records 0, 2 and 4 have %d, next 6", ep.e.Len(), ep.next, len(want))
	}
	start := pushStart{readerKey{"t", 0}, 0, a.key, 100}
	if p.startingAt(start) != ep {
		t.Fatal("the push is not found where it starts")
	}
	smaller := start
	smaller.maxRecords = 5
	if p.startingAt(smaller) != nil {
		t.Fatal("a subscriber with a smaller record bound would take the push")
	}
	none, _ := p.encode("t", 0, 0, out, tenantView("c"), 1<<20)
	if none.e != nil || none.next != 6 || p.startingAt(pushStart{readerKey{"t", 0}, 0, tenantView("c").key, 100}) != none {
		t.Fatalf("a view that sees none of the records: encoding %v, next %d", none.e, none.next)
	}
	if _, err := p.encode("t", 0, 0, out, keyedView{}, 1<<20); err != nil || len(p.byStart) != 2 {
		t.Fatalf("the push of every record is filed by its start too (%d filed), or failed: %v", len(p.byStart), err)
	}
	for i := range maxEncodedPushes {
		p.encode("t", 0, int64(10+i), replyOf(windowRecords(1, 10)), a, 1<<20)
	}
	if p.startingAt(start) != nil || len(p.byStart) > maxEncodedPushes {
		t.Fatalf("evicted pushes stay filed by their start (%d filed)", len(p.byStart))
	}
}

// A subscriber takes the push another subscriber of its view read at its
// cursor only while the record cache holds that push's first record there.
func TestKeptPushIsTakenOnlyWhileTheCacheHoldsItsFirstRecord(t *testing.T) {
	kafka, _ := oneBrokerKafka(t)
	k, _ := testCluster(t, kafka, "")
	key := cacheKey{readerKey: readerKey{"t", 0}}
	recs := tenantRecords(10, "a", "b")
	k.cache.insert(key, unknownEpoch, run{first: 0, next: 10, records: recs})
	a := tenantView("a")
	out := newReply(0, 100, 1<<20)
	k.cache.read(key, 0, out)
	ep, err := k.pushes.encode("t", 0, 0, out, a, int(k.cfg.WindowBytes))
	if err != nil {
		t.Fatal(err)
	}
	at := func(view keyedView, maxRecords int) *encodedPush {
		return (&delivery{k: k, topic: "t", partition: 0, maxRecords: maxRecords, view: view, key: key}).keptPush()
	}
	if at(a, 100) != ep {
		t.Fatal("a subscriber of the same view does not take the kept push")
	}
	if at(a, 5) != nil || at(tenantView("b"), 100) != nil || at(keyedView{}, 100) != nil {
		t.Fatal("a subscriber of another bound or view takes the kept push")
	}
	k.cache.drop(key.readerKey) // the log changed under the cache
	again := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		c := *r
		again[i] = &c
	}
	k.cache.insert(key, unknownEpoch, run{first: 0, next: 10, records: again})
	if at(a, 100) != nil {
		t.Fatal("a push of records the cache no longer holds is taken")
	}
}
