package filter

import (
	"testing"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/envoy-pubsub/gateway/sessionhost"
)

// BenchmarkDecodeHeadersPassThrough is the cost the filter adds to every
// request that is not routed to a kafka-scheme cluster.
func BenchmarkDecodeHeadersPassThrough(b *testing.B) {
	cfg := benchConfig(b)
	cb := routedTo("web")
	for b.Loop() {
		if Factory(cfg, cb).DecodeHeaders(upgradeHeaders(), true) != api.Continue {
			b.Fatal("not passed through")
		}
	}
}

// BenchmarkDecodeHeadersIssueTicket is the cost of handing one upgrade to
// the session server (tickets are redeemed so the store stays small).
func BenchmarkDecodeHeadersIssueTicket(b *testing.B) {
	cfg := benchConfig(b)
	for b.Loop() {
		h := upgradeHeaders()
		if Factory(cfg, routedTo("kafka")).DecodeHeaders(h, true) != api.Continue {
			b.Fatal("no ticket")
		}
		v, _ := h.Get(sessionhost.TicketHeader)
		if _, err := cfg.host.Redeem(v); err != nil {
			b.Fatal(err)
		}
	}
}

func benchConfig(b *testing.B) *filterConfig {
	cfg, err := (&Parser{}).Parse(typedStruct(b, "listener: "+socketPath(b)+"\n"+oneCluster), newConfigCallbacks())
	if err != nil {
		b.Fatal(err)
	}
	fc := cfg.(*filterConfig)
	b.Cleanup(fc.Destroy)
	return fc
}
