package sessionhost

import (
	"sync/atomic"
	"time"

	"github.com/envoy-pubsub/gateway/metrics"
)

// SinkProvider is implemented by Stats that also take the gateway's
// detailed events (bytes, pushes, close codes, record cache, latencies):
// the host feeds them to the newest configuration's Sink.
type SinkProvider interface {
	Sink() metrics.Sink
}

// forward is the metrics.Sink of every host's sessions and of the shared
// Kafka client pool: it passes each event to the Sink of the newest
// configuration whose Stats provide one, or drops it.
type forward struct {
	current atomic.Pointer[metrics.Sink]
}

var _ metrics.Sink = (*forward)(nil)

// use makes s's Sink, if it has one, the destination of the events.
func (f *forward) use(s Stats) {
	if p, ok := s.(SinkProvider); ok {
		sink := p.Sink()
		f.current.Store(&sink)
	}
}

// drop stops passing events to s's Sink if it is the current one, so that
// a destroyed configuration's stats are not kept alive; next, if set, takes
// over.
func (f *forward) drop(s Stats, next Stats) {
	p, ok := s.(SinkProvider)
	if !ok {
		return
	}
	if cur := f.current.Load(); cur != nil && *cur == p.Sink() {
		f.current.Store(nil)
		if next != nil {
			f.use(next)
		}
	}
}

func (f *forward) sink() metrics.Sink {
	if s := f.current.Load(); s != nil {
		return *s
	}
	return metrics.Nop{}
}

func (f *forward) BytesRead(n int)              { f.sink().BytesRead(n) }
func (f *forward) BytesWritten(n int)           { f.sink().BytesWritten(n) }
func (f *forward) Pushed(n int)                 { f.sink().Pushed(n) }
func (f *forward) BudgetWaited()                { f.sink().BudgetWaited() }
func (f *forward) SessionOpened()               { f.sink().SessionOpened() }
func (f *forward) SessionClosed(code int)       { f.sink().SessionClosed(code) }
func (f *forward) Refused(status int, r string) { f.sink().Refused(status, r) }
func (f *forward) Command(c string, err error)  { f.sink().Command(c, err) }
func (f *forward) CacheLookup(hit bool)         { f.sink().CacheLookup(hit) }
func (f *forward) Delivered(records int)        { f.sink().Delivered(records) }
func (f *forward) ConsumerLag(records int64)    { f.sink().ConsumerLag(records) }
func (f *forward) ProduceAck(d time.Duration)   { f.sink().ProduceAck(d) }
func (f *forward) FetchReply(d time.Duration)   { f.sink().FetchReply(d) }
