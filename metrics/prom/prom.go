// Package prom records the gateway's events (metrics.Sink) as Prometheus
// metrics, served by Handler. The metric names and their meaning are listed
// in docs/operations.md; every name starts with "pubsub_".
package prom

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/metrics"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// Close codes with a counter of their own besides the sessions closed by
// code.
const (
	codeSlowConsumer = int(pubsub.CloseSlowConsumer)
	codeTokenExpired = 4401
)

// latencyBuckets are the bounds (seconds) of the latency histograms: 1 ms
// to 10 s.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// lagBuckets are the bounds (records) of the consumer lag histogram.
var lagBuckets = []float64{0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000}

// Metrics is a Prometheus registry holding the gateway's metrics; it
// implements metrics.Sink. Counters of fixed labels are resolved once, so
// that an event costs an atomic add.
type Metrics struct {
	reg *prometheus.Registry

	sessionsOpen   prometheus.Gauge
	sessionsOpened prometheus.Counter
	sessionsClosed *prometheus.CounterVec
	closedByCode   map[int]prometheus.Counter
	slowConsumer   prometheus.Counter
	tokenExpired   prometheus.Counter
	refused        *prometheus.CounterVec
	commands       map[string]*[2]prometheus.Counter // ok, error
	commandsVec    *prometheus.CounterVec
	bytesIn        prometheus.Counter
	bytesOut       prometheus.Counter
	pushes         prometheus.Counter
	delivered      prometheus.Counter
	budgetWaits    prometheus.Counter
	cacheHits      prometheus.Counter
	cacheMisses    prometheus.Counter
	brokerRequests *prometheus.CounterVec
	consumerLag    prometheus.Histogram
	produceAck     prometheus.Histogram
	fetchReply     prometheus.Histogram
}

var _ metrics.Sink = (*Metrics)(nil)

// New returns the gateway's metrics in a registry of their own, with the Go
// runtime's and the process's.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		f(c)
		return c
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
		f(h)
		return h
	}
	m := &Metrics{reg: reg}
	m.sessionsOpen = prometheus.NewGauge(prometheus.GaugeOpts{Name: "pubsub_sessions_open", Help: "Sessions being served."})
	f(m.sessionsOpen)
	m.sessionsOpened = counter("pubsub_sessions_opened_total", "Sessions started (upgrades accepted).")
	m.sessionsClosed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pubsub_sessions_closed_total", Help: "Sessions ended, by WebSocket close code (1006: no close frame)."}, []string{"code"})
	f(m.sessionsClosed)
	m.closedByCode = make(map[int]prometheus.Counter)
	for _, c := range []int{1000, 1001, 1002, 1003, 1006, 1008, 1009, 1011, codeSlowConsumer, codeTokenExpired} {
		m.closedByCode[c] = m.sessionsClosed.WithLabelValues(strconv.Itoa(c))
	}
	m.slowConsumer = counter("pubsub_slow_consumer_closes_total", "Sessions closed with 4008 because their client did not read its pushes.")
	m.tokenExpired = counter("pubsub_token_expiries_total", "Sessions closed with 4401 because their token expired.")
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pubsub_upgrades_refused_total", Help: "Upgrade requests refused, by HTTP status and reason."}, []string{"status", "reason"})
	f(m.refused)
	m.commandsVec = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pubsub_commands_total", Help: "Commands answered, by command and outcome (ok or error)."}, []string{"command", "outcome"})
	f(m.commandsVec)
	m.commands = make(map[string]*[2]prometheus.Counter)
	for _, c := range append(pubsub.Commands(), invalidCommand) {
		m.commands[c] = &[2]prometheus.Counter{m.commandsVec.WithLabelValues(c, "ok"), m.commandsVec.WithLabelValues(c, "error")}
	}
	m.bytesIn = counter("pubsub_received_bytes_total", "Bytes read from clients' connections (WebSocket frames).")
	m.bytesOut = counter("pubsub_sent_bytes_total", "Bytes written to clients' connections (WebSocket frames).")
	m.pushes = counter("pubsub_pushes_total", "Pushed replies (subscription records, acknowledgements, assignments) written to clients.")
	m.delivered = counter("pubsub_records_delivered_total", "Kafka records sent to clients in fetch replies and pushes.")
	m.budgetWaits = counter("pubsub_session_budget_waits_total", "Reply reservations that waited for their session's pending reply bytes to drain.")
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pubsub_record_cache_lookups_total", Help: "Reads of the record cache, by result (hit or miss)."}, []string{"result"})
	f(lookups)
	m.cacheHits, m.cacheMisses = lookups.WithLabelValues("hit"), lookups.WithLabelValues("miss")
	m.brokerRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pubsub_kafka_requests_total", Help: "Requests to Kafka brokers, by request kind and error (none when it succeeded)."}, []string{"kind", "error"})
	f(m.brokerRequests)
	m.consumerLag = histogram("pubsub_consumer_lag_records", "After each push of a subscribed partition: records between the last one sent and the partition's high watermark.", lagBuckets)
	m.produceAck = histogram("pubsub_produce_ack_seconds", "Time from handing a produce command's records to Kafka to their acknowledgement.", latencyBuckets)
	m.fetchReply = histogram("pubsub_fetch_reply_seconds", "Time from a fetch command to its reply, waits at the end of the log included.", latencyBuckets)
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// invalidCommand labels requests that name no command or cannot be decoded.
const invalidCommand = "invalid"

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry returns the registry, for adding metrics of the caller's own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// WatchPool adds the bytes held by the record caches of pool's clients
// (pubsub_record_cache_bytes), read at each scrape.
func (m *Metrics) WatchPool(pool *kafka.Pool) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pubsub_record_cache_bytes", Help: "Bytes the record caches hold."},
		func() float64 { return float64(pool.CachedBytes()) }))
}

// WatchBudget adds the reply bytes held under the process's memory budget
// and the reservations that waited for it, read at each scrape.
func (m *Metrics) WatchBudget(b *pubsub.MemoryBudget) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pubsub_memory_budget_bytes", Help: "Reply bytes held under limits.max_memory_bytes."},
			func() float64 { return float64(b.Used()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "pubsub_memory_budget_waits_total", Help: "Reply reservations that waited for room under limits.max_memory_bytes."},
			func() float64 { return float64(b.Waits()) }),
	)
}

// SessionOpened implements metrics.Server.
func (m *Metrics) SessionOpened() {
	m.sessionsOpened.Inc()
	m.sessionsOpen.Inc()
}

// SessionClosed implements metrics.Server.
func (m *Metrics) SessionClosed(code int) {
	m.sessionsOpen.Dec()
	c := m.closedByCode[code]
	if c == nil {
		c = m.sessionsClosed.WithLabelValues(strconv.Itoa(code))
	}
	c.Inc()
	switch code {
	case codeSlowConsumer:
		m.slowConsumer.Inc()
	case codeTokenExpired:
		m.tokenExpired.Inc()
	}
}

// Refused implements metrics.Server.
func (m *Metrics) Refused(status int, reason string) {
	m.refused.WithLabelValues(strconv.Itoa(status), reason).Inc()
}

// Command implements metrics.Server.
func (m *Metrics) Command(command string, err error) {
	c := m.commands[command]
	if c == nil {
		c = m.commands[invalidCommand]
	}
	if err != nil {
		c[1].Inc()
	} else {
		c[0].Inc()
	}
}

// BytesRead implements metrics.Engine.
func (m *Metrics) BytesRead(n int) { m.bytesIn.Add(float64(n)) }

// BytesWritten implements metrics.Engine.
func (m *Metrics) BytesWritten(n int) { m.bytesOut.Add(float64(n)) }

// Pushed implements metrics.Engine.
func (m *Metrics) Pushed(n int) { m.pushes.Add(float64(n)) }

// BudgetWaited implements metrics.Engine.
func (m *Metrics) BudgetWaited() { m.budgetWaits.Inc() }

// CacheLookup implements metrics.Kafka.
func (m *Metrics) CacheLookup(hit bool) {
	if hit {
		m.cacheHits.Inc()
	} else {
		m.cacheMisses.Inc()
	}
}

// Delivered implements metrics.Kafka.
func (m *Metrics) Delivered(records int) { m.delivered.Add(float64(records)) }

// ConsumerLag implements metrics.Kafka.
func (m *Metrics) ConsumerLag(records int64) { m.consumerLag.Observe(float64(records)) }

// ProduceAck implements metrics.Kafka.
func (m *Metrics) ProduceAck(d time.Duration) { m.produceAck.Observe(d.Seconds()) }

// FetchReply implements metrics.Kafka.
func (m *Metrics) FetchReply(d time.Duration) { m.fetchReply.Observe(d.Seconds()) }

// KafkaHooks returns the franz-go hooks that count broker requests
// (pubsub_kafka_requests_total); add them to every client, e.g. with
// kafka.ClientOptions(kgo.WithHooks(m.KafkaHooks())).
func (m *Metrics) KafkaHooks() kgo.Hook { return brokerHooks{m} }

// brokerHooks counts every request a franz-go client sends to a broker.
type brokerHooks struct{ m *Metrics }

var _ kgo.HookBrokerE2E = brokerHooks{}

// OnBrokerE2E implements kgo.HookBrokerE2E.
func (h brokerHooks) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	h.m.brokerRequests.WithLabelValues(kmsg.NameForKey(key), errorClass(e2e.Err())).Inc()
}

// errorClass names a broker request's failure for a metric label: none, a
// Kafka error name, timeout, connection or other.
func errorClass(err error) string {
	var ke *kerr.Error
	var op *net.OpError
	switch {
	case err == nil:
		return "none"
	case errors.As(err, &ke):
		return ke.Message
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.As(err, &op), errors.Is(err, net.ErrClosed), errors.Is(err, kgo.ErrClientClosed):
		return "connection"
	}
	return "other"
}
