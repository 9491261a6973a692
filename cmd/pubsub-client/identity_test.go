package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/internal/testkit"
)

// TestTokenAndFiltersAgainstAScopedServer runs the command against a server
// that verifies tokens and scopes orders by the tenant claim: -token opens
// a session that reads to the end (-e) exactly its tenant's records, past
// thousands of another tenant's at the end of the log; -filter-key and
// -filter-header narrow them; a record it writes carries its tenant
// whatever -H says; without a token the server's 401 is the error.
func TestTokenAndFiltersAgainstAScopedServer(t *testing.T) {
	is := testkit.NewIssuer(t)
	k := testkit.Kafka(t, kfake.SeedTopics(1, "orders"))
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), `    produce_topics: [orders]
    access:
      - read: [orders]
        records: {headers: {tenant: "{tenant}"}}
      - produce: [orders]
        records: {headers: {tenant: "{tenant}"}}
`, is.IdentityYAML(true)), nil)
	rec := func(tenant, key string, extra ...kgo.RecordHeader) testkit.Record {
		return testkit.Record{Key: key, Value: tenant, Headers: append([]kgo.RecordHeader{{Key: "tenant", Value: []byte(tenant)}}, extra...)}
	}
	kindX := kgo.RecordHeader{Key: "kind", Value: []byte("x")}
	recs := []testkit.Record{rec("acme", "k1", kindX), rec("globex", "k1", kindX), rec("acme", "k2")}
	for range 3000 {
		recs = append(recs, rec("globex", "k1"))
	}
	recs = append(recs, rec("acme", "k1"), rec("acme", "k2", kindX))
	for range 1000 {
		recs = append(recs, rec("globex", "k2", kindX))
	}
	testkit.Produce(t, k.ListenAddrs(), "orders", 0, recs)
	acme := is.Sign(t, "ES256", is.Claims("alice", time.Minute, map[string]any{"tenant": "acme"}))
	read := []string{"-url", srv.URL("kafka"), "-t", "orders", "-o", "beginning", "-e", "-f", `%o %k\n`}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"scope", []string{"-token", acme}, "0 k1\n2 k2\n3003 k1\n3004 k2\n"},
		{"key", []string{"-token", acme, "-filter-key", "k1"}, "0 k1\n3003 k1\n"},
		{"header", []string{"-token", acme, "-filter-header", "kind=x"}, "0 k1\n3004 k2\n"},
		{"key and header", []string{"-token", acme, "-filter-key", "k2", "-filter-header", "kind=x"}, "3004 k2\n"},
		{"another tenant's header", []string{"-token", acme, "-filter-header", "tenant=globex"}, ""},
	} {
		if out := mustRun(t, "", append(read, c.args...)...); out != c.want {
			t.Errorf("%s: printed %q, want %q", c.name, out, c.want)
		}
	}

	mustRun(t, "forged\n", "-url", srv.URL("kafka"), "-P", "-t", "orders", "-p", "0", "-token", acme, "-H", "tenant=globex", "-H", "trace=1")
	end := len(recs)
	if out := mustRun(t, "", "-url", srv.URL("kafka"), "-t", "orders", "-o", fmt.Sprint(end), "-e", "-f", `%s %h\n`, "-token", acme); out != "forged trace=1,tenant=acme\n" {
		t.Errorf("the record written: %q, want it stamped with tenant acme", out)
	}
	globex := is.Sign(t, "EdDSA", is.Claims("gina", time.Minute, map[string]any{"tenant": "globex"}))
	if out := mustRun(t, "", "-url", srv.URL("kafka"), "-t", "orders", "-o", fmt.Sprint(end), "-e", "-token", globex); out != "" {
		t.Errorf("globex reads the record acme wrote: %q", out)
	}

	res := runCLI(t, "", read...)
	if res.code != 1 || !strings.Contains(res.stderr, "401") || !strings.Contains(res.stderr, "authentication required") || res.stdout != "" {
		t.Errorf("without a token: exit %d, stderr %q, stdout %q; want exit 1 and the server's 401", res.code, res.stderr, res.stdout)
	}
}
