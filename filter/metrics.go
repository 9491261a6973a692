package filter

import (
	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/envoy-pubsub/gateway/pubsub"
)

// Names of the Envoy stats the plugin defines (not prefixed by the HTTP
// connection manager's stat_prefix). Per-command counters append the
// command name, e.g. pubsub.commands.cmd_kafka_fetch.
const (
	statSessionsActive   = "pubsub.sessions_active"
	statSessionsTotal    = "pubsub.sessions_total"
	statTicketsIssued    = "pubsub.tickets_issued"
	statTicketsRejected  = "pubsub.tickets_rejected"
	statTicketsRevoked   = "pubsub.tickets_revoked"
	statTicketsOutstand  = "pubsub.tickets_outstanding"
	statUpgradesRefused  = "pubsub.upgrades_refused"
	statUpgradeRequired  = "pubsub.upgrade_required"
	statCommandsTotal    = "pubsub.commands_total"
	statCommandErrors    = "pubsub.command_errors"
	statCommandPrefix    = "pubsub.commands."
	statCommandErrPrefix = "pubsub.command_errors."
)

// commandNames are the commands with a counter of their own: every command
// of the protocol.
var commandNames = pubsub.Commands()

// metrics are the stats of one filter-level config; they receive the
// session host's events (sessionhost.Stats). Every method is safe from any
// goroutine and never panics: Envoy refuses metric calls once the config
// that defined them is destroyed, which the SDK reports by panicking.
type metrics struct {
	sessionsActive   api.GaugeMetric
	sessionsTotal    api.CounterMetric
	ticketsIssued    api.CounterMetric
	ticketsRejected  api.CounterMetric
	ticketsRevoked   api.CounterMetric
	ticketsOutstand  api.GaugeMetric
	upgradesRefused  api.CounterMetric
	upgradeRequired  api.CounterMetric
	commandsTotal    api.CounterMetric
	commandErrors    api.CounterMetric
	commandCounts    map[string]api.CounterMetric
	commandErrCounts map[string]api.CounterMetric
	// sink records the detailed events (sink.go).
	sink *envoySink
}

// defineMetrics defines the plugin's stats; cb is the filter-level Parse's
// callback handler.
func defineMetrics(cb api.ConfigCallbackHandler) *metrics {
	m := &metrics{
		sessionsActive:   cb.DefineGaugeMetric(statSessionsActive),
		sessionsTotal:    cb.DefineCounterMetric(statSessionsTotal),
		ticketsIssued:    cb.DefineCounterMetric(statTicketsIssued),
		ticketsRejected:  cb.DefineCounterMetric(statTicketsRejected),
		ticketsRevoked:   cb.DefineCounterMetric(statTicketsRevoked),
		ticketsOutstand:  cb.DefineGaugeMetric(statTicketsOutstand),
		upgradesRefused:  cb.DefineCounterMetric(statUpgradesRefused),
		upgradeRequired:  cb.DefineCounterMetric(statUpgradeRequired),
		commandsTotal:    cb.DefineCounterMetric(statCommandsTotal),
		commandErrors:    cb.DefineCounterMetric(statCommandErrors),
		commandCounts:    make(map[string]api.CounterMetric, len(commandNames)),
		commandErrCounts: make(map[string]api.CounterMetric, len(commandNames)),
		sink:             defineSink(cb),
	}
	for _, c := range commandNames {
		m.commandCounts[c] = cb.DefineCounterMetric(statCommandPrefix + c)
		m.commandErrCounts[c] = cb.DefineCounterMetric(statCommandErrPrefix + c)
	}
	return m
}

// guarded runs a metric update, swallowing the panic of a destroyed config.
func guarded(update func()) {
	defer func() {
		if p := recover(); p != nil {
			api.LogDebugf("pubsub: metric update dropped: %v", p)
		}
	}()
	update()
}

func (m *metrics) increment(c api.CounterMetric) {
	if m != nil {
		guarded(func() { c.Increment(1) })
	}
}

// SessionStarted counts a session and records the active count.
func (m *metrics) SessionStarted(active int64) {
	m.increment(m.sessionsTotal)
	guarded(func() { m.sessionsActive.Record(uint64(active)) })
}

// SessionEnded records the active count.
func (m *metrics) SessionEnded(active int64) {
	guarded(func() { m.sessionsActive.Record(uint64(active)) })
}

// Refused counts an upgrade the session server refused.
func (m *metrics) Refused(int) { m.increment(m.upgradesRefused) }

// Command counts a finished command and its error, by kind.
func (m *metrics) Command(command string, err error) {
	m.increment(m.commandsTotal)
	if c := m.commandCounts[command]; c != nil {
		m.increment(c)
	}
	if err != nil {
		m.increment(m.commandErrors)
		if c := m.commandErrCounts[command]; c != nil {
			m.increment(c)
		}
	}
}

// TicketRejected counts a refused ticket.
func (m *metrics) TicketRejected() { m.increment(m.ticketsRejected) }

// TicketsOutstanding records the number of outstanding tickets.
func (m *metrics) TicketsOutstanding(n int64) {
	guarded(func() { m.ticketsOutstand.Record(uint64(max(n, 0))) })
}
