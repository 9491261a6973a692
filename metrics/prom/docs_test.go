package prom

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// families returns the names of the gateway's metric families.
func families(t *testing.T) []string {
	t.Helper()
	m := New()
	pool := kafka.NewPool()
	t.Cleanup(pool.Close)
	m.WatchPool(pool)
	m.WatchBudget(pubsub.NewMemoryBudget(1))
	// Labelled families appear once they have a series.
	m.Refused(426, "not_upgrade")
	m.brokerRequests.WithLabelValues("Fetch", "none")
	fams, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "pubsub_") {
			names = append(names, f.GetName())
		}
	}
	if len(names) < 20 {
		t.Fatalf("only %d families: %v", len(names), names)
	}
	return names
}

func TestTheDocsListEveryMetric(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range families(t) {
		if !strings.Contains(string(doc), "| `"+name+"` |") {
			t.Errorf("docs/operations.md has no row for %s", name)
		}
	}
}

func TestTheDashboardShowsEveryMetric(t *testing.T) {
	b, err := os.ReadFile("../../deploy/grafana/pubsub-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct{ Expr string } `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	var exprs strings.Builder
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			exprs.WriteString(q.Expr + "\n")
		}
	}
	names := families(t)
	for _, name := range names {
		if !strings.Contains(exprs.String(), name) {
			t.Errorf("the dashboard shows no panel of %s", name)
		}
	}
	for _, used := range regexp.MustCompile(`pubsub_[a-z_]+`).FindAllString(exprs.String(), -1) {
		if !slices.Contains(names, strings.TrimSuffix(used, "_bucket")) {
			t.Errorf("the dashboard queries %s, which is not a metric", used)
		}
	}
}
