package sessionhost

import (
	"sync"
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
// configuration whose Stats provide one, or drops it. Like observer, it
// reports under a read lock that use and drop take for writing, so that no
// event reaches a Sink once it was dropped.
type forward struct {
	mu      sync.RWMutex
	current metrics.Sink
}

var _ metrics.Sink = (*forward)(nil)

// use makes s's Sink, if it has one, the destination of the events.
func (f *forward) use(s Stats) {
	if p, ok := s.(SinkProvider); ok {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.current = p.Sink()
	}
}

// drop stops passing events to s's Sink if it is the current one, so that
// a destroyed configuration's stats are neither used nor kept alive; next,
// if set, takes over.
func (f *forward) drop(s Stats, next Stats) {
	p, ok := s.(SinkProvider)
	if !ok {
		return
	}
	f.mu.Lock()
	if f.current != p.Sink() {
		f.mu.Unlock()
		return
	}
	f.current = nil
	f.mu.Unlock()
	if next != nil {
		f.use(next)
	}
}

// report calls event with the current Sink, if any.
func (f *forward) report(event func(metrics.Sink)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.current != nil {
		event(f.current)
	}
}

func (f *forward) BytesRead(n int)    { f.report(func(s metrics.Sink) { s.BytesRead(n) }) }
func (f *forward) BytesWritten(n int) { f.report(func(s metrics.Sink) { s.BytesWritten(n) }) }
func (f *forward) Pushed(n int)       { f.report(func(s metrics.Sink) { s.Pushed(n) }) }
func (f *forward) BudgetWaited()      { f.report(func(s metrics.Sink) { s.BudgetWaited() }) }
func (f *forward) SessionOpened()     { f.report(func(s metrics.Sink) { s.SessionOpened() }) }
func (f *forward) SessionClosed(code int) {
	f.report(func(s metrics.Sink) { s.SessionClosed(code) })
}
func (f *forward) Refused(status int, reason string) {
	f.report(func(s metrics.Sink) { s.Refused(status, reason) })
}
func (f *forward) Command(command string, err error) {
	f.report(func(s metrics.Sink) { s.Command(command, err) })
}
func (f *forward) CacheLookup(hit bool)  { f.report(func(s metrics.Sink) { s.CacheLookup(hit) }) }
func (f *forward) Delivered(records int) { f.report(func(s metrics.Sink) { s.Delivered(records) }) }
func (f *forward) ConsumerLag(records int64) {
	f.report(func(s metrics.Sink) { s.ConsumerLag(records) })
}
func (f *forward) ProduceAck(d time.Duration) { f.report(func(s metrics.Sink) { s.ProduceAck(d) }) }
func (f *forward) FetchReply(d time.Duration) { f.report(func(s metrics.Sink) { s.FetchReply(d) }) }
