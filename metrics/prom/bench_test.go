package prom

import (
	"testing"

	"github.com/envoy-pubsub/gateway/metrics"
)

// BenchmarkPerMessageEvents measures the events a session reports per
// frame or push (bytes written, a push, a cache lookup, records
// delivered), recorded by Prometheus and by Nop, from parallel goroutines
// as sessions report them.
func BenchmarkPerMessageEvents(b *testing.B) {
	for _, c := range []struct {
		name string
		sink metrics.Sink
	}{{"nop", metrics.Nop{}}, {"prometheus", New()}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c.sink.BytesWritten(512)
					c.sink.Pushed(1)
					c.sink.CacheLookup(true)
					c.sink.Delivered(4)
				}
			})
		})
	}
}
