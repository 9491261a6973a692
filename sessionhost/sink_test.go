package sessionhost

import (
	"testing"
	"time"

	"github.com/envoy-pubsub/gateway/metrics"
)

// recordingSink counts the events of a few kinds.
type recordingSink struct {
	metrics.Nop
	read, closed, delivered int
}

func (s *recordingSink) BytesRead(n int)       { s.read += n }
func (s *recordingSink) SessionClosed(int)     { s.closed++ }
func (s *recordingSink) Delivered(records int) { s.delivered += records }

// sinkStats are Stats that provide a Sink.
type sinkStats struct {
	*countingStats
	sink *recordingSink
}

func (s sinkStats) Sink() metrics.Sink { return s.sink }

func TestDetailedEventsGoToTheNewestConfigurationsSink(t *testing.T) {
	var f forward
	f.BytesRead(5) // no sink yet: dropped
	first := sinkStats{newStats(), &recordingSink{}}
	f.use(first)
	f.BytesRead(5)
	f.SessionClosed(1000)
	second := sinkStats{newStats(), &recordingSink{}}
	f.use(second)
	f.use(newStats()) // Stats without a Sink keep the newest Sink
	f.Delivered(3)
	f.ProduceAck(time.Millisecond)
	if first.sink.read != 5 || first.sink.closed != 1 || first.sink.delivered != 0 {
		t.Errorf("first sink: %+v", first.sink)
	}
	if second.sink.delivered != 3 || second.sink.read != 0 {
		t.Errorf("second sink: %+v", second.sink)
	}
}

func TestADroppedConfigurationsSinkIsReleased(t *testing.T) {
	var f forward
	first := sinkStats{newStats(), &recordingSink{}}
	second := sinkStats{newStats(), &recordingSink{}}
	f.use(first)
	f.drop(second, nil) // not the current one: no change
	f.BytesRead(1)
	f.drop(first, second)
	f.BytesRead(2)
	f.drop(second, nil)
	f.BytesRead(4)
	if first.sink.read != 1 || second.sink.read != 2 || f.current != nil {
		t.Errorf("first read %d, second read %d, current %v", first.sink.read, second.sink.read, f.current)
	}
}
