package filter

import (
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	gwmetrics "github.com/envoy-pubsub/gateway/metrics"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// Names of the Envoy stats that carry the metrics of the standalone
// server's Prometheus endpoint (docs/operations.md), under the same names.
// Envoy's Go SDK has counters and gauges but neither labels nor
// histograms: a family with labels is one counter over all of them (cache
// hits and misses are two), and the latency and lag histograms exist only
// in Prometheus. Sessions, commands and refusals keep the stats of
// metrics.go.
const (
	statSessionsClosed = "pubsub_sessions_closed_total"
	statSlowConsumer   = "pubsub_slow_consumer_closes_total"
	statTokenExpiries  = "pubsub_token_expiries_total"
	statBytesReceived  = "pubsub_received_bytes_total"
	statBytesSent      = "pubsub_sent_bytes_total"
	statPushes         = "pubsub_pushes_total"
	statDelivered      = "pubsub_records_delivered_total"
	statBudgetWaits    = "pubsub_session_budget_waits_total"
	statCacheHits      = "pubsub_record_cache_hits_total"
	statCacheMisses    = "pubsub_record_cache_misses_total"
)

// tokenExpiredCode is the close code of a session whose token expired.
const tokenExpiredCode = 4401

// envoySink records the gateway's detailed events (metrics.Sink) in Envoy
// counters; every update is guarded like those of metrics.
type envoySink struct {
	sessionsClosed api.CounterMetric
	slowConsumer   api.CounterMetric
	tokenExpiries  api.CounterMetric
	bytesReceived  api.CounterMetric
	bytesSent      api.CounterMetric
	pushes         api.CounterMetric
	delivered      api.CounterMetric
	budgetWaits    api.CounterMetric
	cacheHits      api.CounterMetric
	cacheMisses    api.CounterMetric
}

var _ gwmetrics.Sink = (*envoySink)(nil)

func defineSink(cb api.ConfigCallbackHandler) *envoySink {
	return &envoySink{
		sessionsClosed: cb.DefineCounterMetric(statSessionsClosed),
		slowConsumer:   cb.DefineCounterMetric(statSlowConsumer),
		tokenExpiries:  cb.DefineCounterMetric(statTokenExpiries),
		bytesReceived:  cb.DefineCounterMetric(statBytesReceived),
		bytesSent:      cb.DefineCounterMetric(statBytesSent),
		pushes:         cb.DefineCounterMetric(statPushes),
		delivered:      cb.DefineCounterMetric(statDelivered),
		budgetWaits:    cb.DefineCounterMetric(statBudgetWaits),
		cacheHits:      cb.DefineCounterMetric(statCacheHits),
		cacheMisses:    cb.DefineCounterMetric(statCacheMisses),
	}
}

// Sink implements sessionhost.SinkProvider.
func (m *metrics) Sink() gwmetrics.Sink { return m.sink }

func add(c api.CounterMetric, n int) {
	if n > 0 {
		guarded(func() { c.Increment(int64(n)) })
	}
}

// BytesRead implements metrics.Engine.
func (s *envoySink) BytesRead(n int) { add(s.bytesReceived, n) }

// BytesWritten implements metrics.Engine.
func (s *envoySink) BytesWritten(n int) { add(s.bytesSent, n) }

// Pushed implements metrics.Engine.
func (s *envoySink) Pushed(n int) { add(s.pushes, n) }

// BudgetWaited implements metrics.Engine.
func (s *envoySink) BudgetWaited() { add(s.budgetWaits, 1) }

// SessionOpened implements metrics.Server; pubsub.sessions_total counts it.
func (s *envoySink) SessionOpened() {}

// SessionClosed implements metrics.Server.
func (s *envoySink) SessionClosed(code int) {
	add(s.sessionsClosed, 1)
	switch code {
	case int(pubsub.CloseSlowConsumer):
		add(s.slowConsumer, 1)
	case tokenExpiredCode:
		add(s.tokenExpiries, 1)
	}
}

// Refused implements metrics.Server; pubsub.upgrades_refused counts it.
func (s *envoySink) Refused(int, string) {}

// Command implements metrics.Server; pubsub.commands.* count it.
func (s *envoySink) Command(string, error) {}

// CacheLookup implements metrics.Kafka.
func (s *envoySink) CacheLookup(hit bool) {
	if hit {
		add(s.cacheHits, 1)
	} else {
		add(s.cacheMisses, 1)
	}
}

// Delivered implements metrics.Kafka.
func (s *envoySink) Delivered(records int) { add(s.delivered, records) }

// ConsumerLag implements metrics.Kafka; Envoy's Go SDK has no histograms.
func (s *envoySink) ConsumerLag(int64) {}

// ProduceAck implements metrics.Kafka; Envoy's Go SDK has no histograms.
func (s *envoySink) ProduceAck(time.Duration) {}

// FetchReply implements metrics.Kafka; Envoy's Go SDK has no histograms.
func (s *envoySink) FetchReply(time.Duration) {}
