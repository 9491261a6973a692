package prom

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
)

// value returns the value of the series of family name whose labels are
// exactly labels (name, value pairs), or -1 when there is none.
func value(t *testing.T, m *Metrics, name string, labels ...string) float64 {
	t.Helper()
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			if matches(s, labels) {
				if s.Counter != nil {
					return s.Counter.GetValue()
				}
				return s.Gauge.GetValue()
			}
		}
	}
	return -1
}

func matches(s *dto.Metric, labels []string) bool {
	if len(s.GetLabel())*2 != len(labels) {
		return false
	}
	for i, l := range s.GetLabel() {
		if l.GetName() != labels[2*i] || l.GetValue() != labels[2*i+1] {
			return false
		}
	}
	return true
}

func TestCloseCodesCountSessionsAndTheirOwnFamilies(t *testing.T) {
	m := New()
	for _, code := range []int{4008, 4401, 4401, 1000, 4999} {
		m.SessionOpened()
		m.SessionClosed(code)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pubsub_slow_consumer_closes_total", nil, 1},
		{"pubsub_token_expiries_total", nil, 2},
		{"pubsub_sessions_closed_total", []string{"code", "4401"}, 2},
		{"pubsub_sessions_closed_total", []string{"code", "4999"}, 1},
		{"pubsub_sessions_opened_total", nil, 5},
		{"pubsub_sessions_open", nil, 0},
	} {
		if got := value(t, m, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestCommandsAndRefusalsAreCountedByTheirLabels(t *testing.T) {
	m := New()
	m.Command("cmd_kafka_fetch", nil)
	m.Command("cmd_kafka_fetch", errors.New("no"))
	m.Command("", errors.New("invalid request: no command"))
	m.Refused(503, "too_many_sessions")
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"pubsub_commands_total", []string{"command", "cmd_kafka_fetch", "outcome", "ok"}},
		{"pubsub_commands_total", []string{"command", "cmd_kafka_fetch", "outcome", "error"}},
		{"pubsub_commands_total", []string{"command", "invalid", "outcome", "error"}},
		{"pubsub_upgrades_refused_total", []string{"reason", "too_many_sessions", "status", "503"}},
	} {
		if got := value(t, m, c.name, c.labels...); got != 1 {
			t.Errorf("%s%v = %v, want 1", c.name, c.labels, got)
		}
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `pubsub_commands_total{command="cmd_kafka_fetch",outcome="error"} 1`) {
		t.Errorf("exposition lacks the fetch error count:\n%s", rec.Body.String())
	}
}

func TestBrokerRequestErrorsAreClassedForTheirLabel(t *testing.T) {
	for err, want := range map[error]string{
		nil:                   "none",
		kerr.OffsetOutOfRange: "OFFSET_OUT_OF_RANGE",
		fmt.Errorf("x: %w", kerr.NotLeaderForPartition):      "NOT_LEADER_FOR_PARTITION",
		context.DeadlineExceeded:                             "timeout",
		&net.OpError{Op: "dial", Err: errors.New("refused")}: "connection",
		errors.New("something else"):                         "other",
	} {
		if got := errorClass(err); got != want {
			t.Errorf("errorClass(%v) = %q, want %q", err, got, want)
		}
	}
}
