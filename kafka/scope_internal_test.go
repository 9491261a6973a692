package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	pb "github.com/envoy-pubsub/gateway/proto"
)

func TestViewVisibleAndKey(t *testing.T) {
	tenantA := RecordMatch{Headers: []kgo.RecordHeader{{Key: "tenant", Value: []byte("a")}}}
	recA := &kgo.Record{Key: []byte("k1"), Headers: []kgo.RecordHeader{{Key: "x", Value: []byte("1")}, {Key: "tenant", Value: []byte("a")}}}
	recB := &kgo.Record{Key: []byte("k1"), Headers: []kgo.RecordHeader{{Key: "tenant", Value: []byte("b")}}}
	recNone := &kgo.Record{Key: []byte("k2")}

	cases := []struct {
		name string
		view View
		want []bool // recA, recB, recNone
	}{
		{"all", View{}, []bool{true, true, true}},
		{"scope a", View{Scope: Scope{tenantA}}, []bool{true, false, false}},
		{"empty scope sees nothing", View{Scope: Scope{}}, []bool{false, false, false}},
		{"filter key", View{Filter: MatchFilter(&pb.KafkaFilter{Key: []byte("k1")})}, []bool{true, true, false}},
		{"scope and filter", View{Scope: Scope{tenantA}, Filter: MatchFilter(&pb.KafkaFilter{Key: []byte("k2")})}, []bool{false, false, false}},
		{"filter header", View{Filter: MatchFilter(&pb.KafkaFilter{Headers: []*pb.KafkaHeader{{Key: "tenant", Value: []byte("b")}}})}, []bool{false, true, false}},
	}
	for _, c := range cases {
		for i, r := range []*kgo.Record{recA, recB, recNone} {
			if got := c.view.Visible(r); got != c.want[i] {
				t.Errorf("%s: record %d visible = %v, want %v", c.name, i, got, c.want[i])
			}
		}
	}
	if k := (View{}).Key(); k != "" {
		t.Errorf("the view of every record has key %q, want empty", k)
	}
	a, b := View{Scope: Scope{tenantA}}, View{Scope: Scope{{Headers: []kgo.RecordHeader{{Key: "tenant", Value: []byte("a")}}}}}
	if a.Key() != b.Key() {
		t.Errorf("equal views have keys %q and %q", a.Key(), b.Key())
	}
	if a.Key() == (View{Scope: Scope{}}).Key() || a.Key() == (View{Filter: tenantA}).Key() {
		t.Errorf("different views share key %q", a.Key())
	}
}
