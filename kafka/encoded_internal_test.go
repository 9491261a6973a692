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
	a, err := p.encode("t", 2, replyOf(recs), keyedView{}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.encode("t", 2, replyOf(recs), keyedView{}, 1<<20)
	if a != b {
		t.Fatal("the same records were encoded twice")
	}
	if c, _ := p.encode("t", 2, replyOf(recs[:2]), keyedView{}, 1<<20); c == a {
		t.Fatal("a push of fewer records shares the longer one's encoding")
	}
	if c, _ := p.encode("t", 2, &reply{records: recs, next: 9}, keyedView{}, 1<<20); c == a {
		t.Fatal("a push with another next_offset shares the encoding")
	}
	want, _ := proto.Marshal(pushReply("t", 2, recs, 3))
	var resp pb.PubSubResp
	if err := proto.Unmarshal(want, &resp); err != nil || len(resp.GetKafkaFetchResp().GetMessages()) != 3 {
		t.Fatalf("reference push: %v", err)
	}
	if a.Len() != len(want) {
		t.Fatalf("encoded push has %d bytes, the push %d", a.Len(), len(want))
	}
}

func TestEncodedPushesStayWithinTheirBounds(t *testing.T) {
	var p encodedPushes
	for range 3 * maxEncodedPushes {
		if _, err := p.encode("t", 0, replyOf(windowRecords(1, 100)), keyedView{}, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.byKey) != maxEncodedPushes || len(p.order) != maxEncodedPushes {
		t.Fatalf("%d pushes kept, bound %d", len(p.byKey), maxEncodedPushes)
	}
	for range 10 {
		p.encode("t", 0, replyOf(windowRecords(1, 1000)), keyedView{}, 2500)
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
				if _, err := p.encode("t", 0, replyOf(recs), keyedView{}, 2000); err != nil {
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
