package standalone_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// These tests prove the identity and access contract end to end: tokens
// signed with the keys of a JWK Set file, verified by the standalone server,
// whose claims fill the access rules that decide what each session reads
// and writes.

// tenantAccess is the access section of the multi-tenant tests: every user
// reads its own topic and its tenant's records of orders, writes orders
// stamped with its tenant and subject, and uses its tenant's group and
// its own.
// fetch_max_wait is long, so that a fetch that waited at the broker before
// the end of the log would miss the tests' per-fetch deadline.
const tenantAccess = `    fetch_max_wait: 20s
    request_timeout: 30s
    access:
      - read: ["user.{sub}"]
      - read: ["orders"]
        records: {headers: {tenant: "{tenant}"}}
      - produce: ["orders"]
        records: {headers: {tenant: "{tenant}", user: "{sub}"}}
      - groups: ["g-{tenant}", "g-{sub}"]
`

// fetchDeadline bounds each fetch before the end of the log, far below
// fetch_max_wait.
const fetchDeadline = 5 * time.Second

// tenantOrders is the log of orders the tests write: records of several
// tenants (the header tenant), with long runs of records one tenant does
// not see.
type tenantOrders struct {
	recs []testkit.Record
}

// add appends n records of tenant ("" for none) with key, and extra
// headers.
func (o *tenantOrders) add(n int, tenant, key string, extra ...kgo.RecordHeader) {
	for range n {
		r := testkit.Record{Key: key, Value: fmt.Sprintf("%s-%d", tenant, len(o.recs))}
		if tenant != "" {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: "tenant", Value: []byte(tenant)})
		}
		r.Headers = append(r.Headers, extra...)
		o.recs = append(o.recs, r)
	}
}

// offsets returns the offsets, from offset from on, of the records some
// tenant of tenants wrote that also carry key (when not empty) and every
// header of want.
func (o *tenantOrders) offsets(from int, tenants []string, key string, want ...kgo.RecordHeader) []int64 {
	var out []int64
	for i := from; i < len(o.recs); i++ {
		r := o.recs[i]
		if (key != "" && r.Key != key) || !slices.ContainsFunc(tenants, func(t string) bool { return headerIs(r.Headers, "tenant", t) }) {
			continue
		}
		if slices.ContainsFunc(want, func(h kgo.RecordHeader) bool { return !headerIs(r.Headers, h.Key, string(h.Value)) }) {
			continue
		}
		out = append(out, int64(i))
	}
	return out
}

func headerIs(hs []kgo.RecordHeader, key, value string) bool {
	return slices.ContainsFunc(hs, func(h kgo.RecordHeader) bool { return h.Key == key && string(h.Value) == value })
}

// kindX is a header the client filters of the tests select by.
var kindX = kgo.RecordHeader{Key: "kind", Value: []byte("x")}

// writeOrders writes, to orders (one partition), records of t-acme and
// t-globex among thousands of others, records without a tenant, and
// records of the tenants "*" and "42"; the log ends in records t-acme does
// not see.
func writeOrders(t *testing.T, brokers []string) *tenantOrders {
	o := &tenantOrders{}
	o.add(1, "t-acme", "k1", kindX)
	o.add(1, "t-globex", "k1")
	o.add(1, "t-acme", "k2")
	o.add(1, "", "k1")
	o.add(1, "*", "k1")
	o.add(1, "42", "k1")
	o.add(3000, "t-globex", "k2")
	o.add(1, "t-acme", "k1", kindX)
	o.add(2000, "t-initech", "k1")
	o.add(1, "t-globex", "k1", kindX)
	o.add(1, "t-acme", "k2", kindX)
	o.add(1500, "t-initech", "k2")
	testkit.Produce(t, brokers, "orders", 0, o.recs)
	return o
}

// fetchLoop fetches topic/partition 0 from offset from with filter,
// following next_offset, until end; it returns the offsets it was given.
// Each fetch before the end of the log must be answered within
// fetchDeadline: none may wait at the broker while records remain.
func fetchLoop(t *testing.T, c *client.Client, topic string, from, end int64, filter *pb.KafkaFilter) []int64 {
	t.Helper()
	var got []int64
	for next, fetches := from, 0; next < end; fetches++ {
		ctx, cancel := context.WithTimeout(context.Background(), fetchDeadline)
		fr, err := c.FetchReply(ctx, &pb.CmdKafkaFetch{Topic: topic, Offset: next, Filter: filter})
		cancel()
		if err != nil {
			t.Fatalf("fetch at %d (after %d fetches): %v", next, fetches, err)
		}
		for _, m := range fr.GetMessages() {
			if m.GetOffset() < next {
				t.Fatalf("fetch at %d returned offset %d", next, m.GetOffset())
			}
			got = append(got, m.GetOffset())
			next = m.GetOffset() + 1
		}
		if fr.GetNextOffset() < next || (fr.GetNextOffset() == next && len(fr.GetMessages()) == 0) {
			t.Fatalf("fetch at %d, before the end %d: %d records and next_offset %d", next, end, len(fr.GetMessages()), fr.GetNextOffset())
		}
		next = fr.GetNextOffset()
	}
	return got
}

// pushesUntil reads sub's pushes of partition 0 until their next_offset
// reaches end and returns the offsets of the records pushed, which must
// come in order, each once.
func pushesUntil(t *testing.T, sub *client.Subscription, from, end int64) []int64 {
	t.Helper()
	var got []int64
	timeout := time.After(30 * time.Second)
	for next := from; next < end; {
		select {
		case resp, ok := <-sub.C():
			if !ok {
				t.Fatalf("the subscription ended at %d, before %d", next, end)
			}
			fr := resp.GetKafkaFetchResp()
			if fr == nil {
				t.Fatalf("push %v, want records", resp)
			}
			for _, m := range fr.GetMessages() {
				if m.GetOffset() < next {
					t.Fatalf("offset %d pushed after next_offset %d", m.GetOffset(), next)
				}
				got = append(got, m.GetOffset())
				next = m.GetOffset() + 1
			}
			if fr.GetNextOffset() < next {
				t.Fatalf("next_offset %d before the records pushed (%d)", fr.GetNextOffset(), next)
			}
			next = fr.GetNextOffset()
		case <-timeout:
			t.Fatalf("pushes stopped at %d, want %d (records so far %v)", next, end, got)
		}
	}
	return got
}

// wantRefused fails the test unless err is the error_resp message want.
func wantRefused(t *testing.T, what string, err error, want string) {
	t.Helper()
	var se *client.ServerError
	if !errors.As(err, &se) || !strings.HasSuffix(se.Message, want) {
		t.Errorf("%s: %v, want %q", what, err, want)
	}
}

// infoLines returns the lines of logs at level info and above.
func infoLines(logs string) string {
	var b strings.Builder
	for _, l := range strings.Split(logs, "\n") {
		if !strings.Contains(l, "level=DEBUG") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// TestTenantScopesAcrossFetchLoops: a session of a tenant fetches orders
// from the first offset to the end of the log, over thousands of other
// tenants' records, and is given exactly its tenant's records (narrowed by
// its client filter), every fetch answered at once. Claims are matched
// literally ("*" is a tenant named "*"), a list claim stands for each of
// its values, a number for its decimal text; a session whose token lacks
// the claim, or holds one of another type, may not read orders at all.
// Tokens of each signing method open sessions; no claim reaches a log line
// at info level.
func TestTenantScopesAcrossFetchLoops(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv, brokers, logs := identityServer(t, is, true, tenantAccess, "orders")
	orders := writeOrders(t, brokers)
	end := int64(len(orders.recs))
	header := func(h kgo.RecordHeader) *pb.KafkaFilter {
		return &pb.KafkaFilter{Headers: []*pb.KafkaHeader{{Key: h.Key, Value: h.Value}}}
	}
	for _, c := range []struct {
		name    string
		method  string
		tenant  any // the tenant claim; nil: none
		filter  *pb.KafkaFilter
		tenants []string // whose records the session sees; nil: orders is refused
		key     string   // of the filter
		headers []kgo.RecordHeader
	}{
		{name: "acme", method: "RS256", tenant: "t-acme", tenants: []string{"t-acme"}},
		{name: "globex", method: "ES256", tenant: "t-globex", tenants: []string{"t-globex"}},
		{name: "list", method: "EdDSA", tenant: []any{"t-acme", "t-globex", true}, tenants: []string{"t-acme", "t-globex"}},
		{name: "star", method: "RS256", tenant: "*", tenants: []string{"*"}},
		{name: "number", method: "ES256", tenant: 42, tenants: []string{"42"}},
		{name: "acme, key filter", method: "EdDSA", tenant: "t-acme", filter: &pb.KafkaFilter{Key: []byte("k1")}, tenants: []string{"t-acme"}, key: "k1"},
		{name: "acme, header filter", method: "RS256", tenant: "t-acme", filter: header(kindX), tenants: []string{"t-acme"}, headers: []kgo.RecordHeader{kindX}},
		{name: "acme, key and header filter", method: "RS256", tenant: "t-acme", filter: &pb.KafkaFilter{Key: []byte("k2"), Headers: header(kindX).Headers}, tenants: []string{"t-acme"}, key: "k2", headers: []kgo.RecordHeader{kindX}},
		{name: "acme, filter of globex", method: "ES256", tenant: "t-acme", filter: header(kgo.RecordHeader{Key: "tenant", Value: []byte("t-globex")}), tenants: []string{"t-acme"}, headers: []kgo.RecordHeader{{Key: "tenant", Value: []byte("t-globex")}}},
		{name: "no tenant claim", method: "RS256"},
		{name: "boolean", method: "RS256", tenant: true},
		{name: "object", method: "RS256", tenant: map[string]any{"tenant": "t-acme"}},
		{name: "null", method: "RS256", tenant: nil},
		{name: "empty list", method: "RS256", tenant: []any{}},
		{name: "list of others", method: "RS256", tenant: []any{false, map[string]any{}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			claims := is.Claims("user-"+strings.ReplaceAll(c.name, " ", "-"), time.Minute, nil)
			if c.tenant != nil || c.name == "null" {
				claims["tenant"] = c.tenant
			}
			s := dialToken(t, srv, is.Sign(t, c.method, claims))
			ctx := testCtx(t)
			if c.tenants == nil {
				_, err := s.FetchReply(ctx, &pb.CmdKafkaFetch{Topic: "orders"})
				wantRefused(t, "fetch", err, "topic not allowed")
				_, err = s.ListOffset(ctx, "orders", 0, -1)
				wantRefused(t, "list offset", err, "topic not allowed")
				_, err = s.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "orders"})
				wantRefused(t, "subscribe", err, "topic not allowed")
				return
			}
			if off, err := s.ListOffset(ctx, "orders", 0, -1); err != nil || off != end {
				t.Fatalf("list offset: %d %v, want %d", off, err, end)
			}
			got := fetchLoop(t, s, "orders", 0, end, c.filter)
			if want := orders.offsets(0, c.tenants, c.key, c.headers...); !slices.Equal(got, want) {
				t.Fatalf("fetched %v, want %v", got, want)
			}
		})
	}
	// The session's end line names its subject (the operations contract);
	// no other claim, and the subject nowhere else, reaches an info line.
	info := regexp.MustCompile(`msg="session ended"(.*) subject=\S+`).ReplaceAllString(infoLines(logs.String()), `msg="session ended"$1`)
	for _, claim := range []string{"t-acme", "t-globex", "user-acme"} {
		if strings.Contains(info, claim) {
			t.Errorf("the claim %q reached a log line at info level:\n%s", claim, info)
		}
	}
}

// TestLiteralSubjectsNeverWiden: a subject holding glob characters names
// one topic, its own, never others: fetch, list offset and subscribe of
// user.alice are refused to the subjects "*", "ali?e" and "[a]lice".
func TestLiteralSubjectsNeverWiden(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv, brokers, _ := identityServer(t, is, true, tenantAccess, "user.alice")
	testkit.Produce(t, brokers, "user.alice", 0, testkit.Numbered(1))
	for _, sub := range []string{"*", "ali?e", "[a]lice", `ali\ce`} {
		c := dialToken(t, srv, is.Token(t, sub, time.Minute, nil))
		ctx := testCtx(t)
		_, err := c.Fetch(ctx, "user.alice", 0, 0)
		wantRefused(t, sub+": fetch", err, "topic not allowed")
		_, err = c.ListOffset(ctx, "user.alice", 0, -1)
		wantRefused(t, sub+": list offset", err, "topic not allowed")
		_, err = c.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "user.alice"})
		wantRefused(t, sub+": subscribe", err, "topic not allowed")
	}
	alice := dialToken(t, srv, is.Token(t, "alice", time.Minute, nil))
	if msgs, err := alice.Fetch(testCtx(t), "user.alice", 0, 0); err != nil || len(msgs) != 1 {
		t.Fatalf("alice's own topic: %v %v", msgs, err)
	}
}

// TestTenantSubscriptionsEndToEnd: subscriptions of tenants' sessions are
// pushed exactly their tenant's records, from the earliest offset, from
// the latest, and on resuming from the last next_offset pushed (each
// record once), over thousands of records they do not see; a client
// filter narrows what the scope lets through.
func TestTenantSubscriptionsEndToEnd(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv, brokers, _ := identityServer(t, is, true, tenantAccess, "orders")
	orders := writeOrders(t, brokers)
	token := func(sub, method, tenant string) string {
		return is.Sign(t, method, is.Claims(sub, time.Minute, map[string]any{"tenant": tenant}))
	}
	ctx := testCtx(t)
	acme := dialToken(t, srv, token("alice", "RS256", "t-acme"))
	fromEarliest, err := acme.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "orders", Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	filtered, err := dialToken(t, srv, token("anna", "EdDSA", "t-acme")).Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "orders",
		Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}, Filter: &pb.KafkaFilter{Headers: []*pb.KafkaHeader{{Key: kindX.Key, Value: kindX.Value}}}})
	if err != nil {
		t.Fatal(err)
	}
	fromLatest, err := dialToken(t, srv, token("gina", "ES256", "t-globex")).Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "orders"})
	if err != nil {
		t.Fatal(err)
	}
	end := int64(len(orders.recs))
	if got, want := pushesUntil(t, fromEarliest, 0, end), orders.offsets(0, []string{"t-acme"}, ""); !slices.Equal(got, want) {
		t.Fatalf("acme from earliest: %v, want %v", got, want)
	}
	if got, want := pushesUntil(t, filtered, 0, end), orders.offsets(0, []string{"t-acme"}, "", kindX); !slices.Equal(got, want) {
		t.Fatalf("acme, filter kind=x, from earliest: %v, want %v", got, want)
	}

	// New records: the subscription from the latest offset gets its
	// tenant's, the one from earliest goes on with its own.
	from := len(orders.recs)
	more := &tenantOrders{recs: slices.Clone(orders.recs)}
	more.add(2000, "t-initech", "k1")
	more.add(2, "t-globex", "k2")
	more.add(1, "t-acme", "k1")
	more.add(1000, "t-initech", "k1")
	testkit.Produce(t, brokers, "orders", 0, more.recs[from:])
	end = int64(len(more.recs))
	if got, want := pushesUntil(t, fromLatest, int64(from), end), more.offsets(from, []string{"t-globex"}, ""); !slices.Equal(got, want) {
		t.Fatalf("globex from latest: %v, want %v", got, want)
	}
	if got, want := pushesUntil(t, fromEarliest, int64(from), end), more.offsets(from, []string{"t-acme"}, ""); !slices.Equal(got, want) {
		t.Fatalf("acme, tailing: %v, want %v", got, want)
	}

	// The client goes away at its last next_offset and resumes there in a
	// new session: the records of its tenant written meanwhile, once each.
	acme.Close()
	from = len(more.recs)
	more.add(3000, "t-globex", "k1")
	more.add(2, "t-acme", "k2")
	testkit.Produce(t, brokers, "orders", 0, more.recs[from:])
	resumed, err := dialToken(t, srv, token("alice", "RS256", "t-acme")).Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "orders", Offsets: map[int32]int64{0: end}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pushesUntil(t, resumed, end, int64(len(more.recs))), more.offsets(from, []string{"t-acme"}, ""); !slices.Equal(got, want) {
		t.Fatalf("acme resumed at %d: %v, want %v", end, got, want)
	}
}

// groupRecords collects the records pushed to a group subscription until it
// holds n, and fails on a record pushed twice.
func groupRecords(t *testing.T, sub *client.Subscription, n int) []int64 {
	t.Helper()
	var got []int64
	timeout := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case resp, ok := <-sub.C():
			if !ok {
				t.Fatalf("the group subscription ended with %v", got)
			}
			if e := resp.GetErrorResp(); e != nil {
				t.Fatalf("group push: %s", e.GetMessage())
			}
			for _, m := range resp.GetKafkaFetchResp().GetMessages() {
				if slices.Contains(got, m.GetOffset()) {
					t.Fatalf("offset %d pushed twice", m.GetOffset())
				}
				got = append(got, m.GetOffset())
			}
		case <-timeout:
			t.Fatalf("group pushes stopped at %v, want %d records", got, n)
		}
	}
	slices.Sort(got)
	return got
}

// TestTenantGroupMembersEndToEnd: members of two tenants' groups
// (g-{tenant}) reading the same topic are each pushed exactly their
// tenant's records; a member with a client filter (in its own group,
// g-{sub}) only those of them the filter lets through. A session may not
// join another tenant's group.
func TestTenantGroupMembersEndToEnd(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv, brokers, _ := identityServer(t, is, true, tenantAccess, "orders")
	orders := writeOrders(t, brokers)
	ctx := testCtx(t)
	for _, c := range []struct {
		sub, tenant, method, group string
		key                        string // of the filter
	}{
		{"alice", "t-acme", "EdDSA", "g-t-acme", ""},
		{"gina", "t-globex", "RS256", "g-t-globex", ""},
		{"anna", "t-acme", "ES256", "g-anna", "k1"},
	} {
		s := dialToken(t, srv, is.Sign(t, c.method, is.Claims(c.sub, time.Minute, map[string]any{"tenant": c.tenant})))
		if c.tenant == "t-acme" {
			_, err := s.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "orders", Group: "g-t-globex"})
			wantRefused(t, c.sub+": another tenant's group", err, "group not allowed")
		}
		cmd := &pb.CmdKafkaSubscribe{Topic: "orders", Group: c.group, Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}}
		if c.key != "" {
			cmd.Filter = &pb.KafkaFilter{Key: []byte(c.key)}
		}
		sub, err := s.Subscribe(ctx, cmd)
		if err != nil {
			t.Fatalf("%s: %v", c.group, err)
		}
		want := orders.offsets(0, []string{c.tenant}, c.key)
		if got := groupRecords(t, sub, len(want)); !slices.Equal(got, want) {
			t.Errorf("%s: pushed %v, want %v", c.group, got, want)
		}
	}
}

// TestStampedRecordsReachTheirTenantOnly: a record a session writes to
// orders carries its tenant and subject, whatever headers the client sent:
// the session's tenant reads it back (with the stamped headers), another
// tenant's session never sees it, even when the client claimed that tenant.
func TestStampedRecordsReachTheirTenantOnly(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv, _, _ := identityServer(t, is, true, tenantAccess, "orders")
	ctx := testCtx(t)
	session := func(sub, tenant string) *client.Client {
		return dialToken(t, srv, is.Sign(t, "EdDSA", is.Claims(sub, time.Minute, map[string]any{"tenant": tenant})))
	}
	globex, err := session("gina", "t-globex").Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "orders", Partitions: []int32{0}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = session("mallory", "t-acme").Produce(ctx, "orders", 0,
		&pb.KafkaRecord{Value: []byte("forged"), Headers: []*pb.KafkaHeader{
			{Key: "tenant", Value: []byte("t-globex")}, {Key: "user", Value: []byte("gina")}, {Key: "trace", Value: []byte("7")},
		}})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := session("alice", "t-acme").Fetch(ctx, "orders", 0, 0)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("acme fetch: %v %v", msgs, err)
	}
	var headers []string
	for _, h := range msgs[0].GetHeaders() {
		headers = append(headers, h.GetKey()+"="+string(h.GetValue()))
	}
	if want := []string{"trace=7", "tenant=t-acme", "user=mallory"}; !slices.Equal(headers, want) {
		t.Fatalf("the record carries %v, want %v", headers, want)
	}
	// The globex subscription's position goes past the record without it.
	if got := pushesUntil(t, globex, 0, 1); len(got) != 0 {
		t.Fatalf("globex was pushed %v", got)
	}
}

// TestKeyScopesAndStampedKeys: a rule whose records name the key sees only
// the records keyed with the claim, in fetches and pushes, and a produce
// rule's key replaces the one the client sent.
func TestKeyScopesAndStampedKeys(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv, brokers, _ := identityServer(t, is, true, `    access:
      - read: ["inbox"]
        records: {key: "{sub}"}
      - produce: ["inbox"]
        records: {key: "{sub}"}
`, "inbox")
	testkit.Produce(t, brokers, "inbox", 0, []testkit.Record{{Key: "alice", Value: "0"}, {Key: "bob", Value: "1"}, {Key: "", Value: "2"}, {Key: "alice", Value: "3"}})
	ctx := testCtx(t)
	alice := dialToken(t, srv, is.Token(t, "alice", time.Minute, nil))
	sub, err := alice.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "inbox", Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	if got := fetchLoop(t, alice, "inbox", 0, 4, nil); !slices.Equal(got, []int64{0, 3}) {
		t.Fatalf("alice fetched %v, want [0 3]", got)
	}
	if got := pushesUntil(t, sub, 0, 4); !slices.Equal(got, []int64{0, 3}) {
		t.Fatalf("alice was pushed %v, want [0 3]", got)
	}
	bob := dialToken(t, srv, is.Token(t, "bob", time.Minute, nil))
	if _, err := bob.Produce(ctx, "inbox", 0, &pb.KafkaRecord{Key: []byte("alice"), Value: []byte("forged")}); err != nil {
		t.Fatal(err)
	}
	if got := pushesUntil(t, sub, 4, 5); len(got) != 0 {
		t.Fatalf("bob's record, keyed alice by bob's client, reached alice: %v", got)
	}
	msgs, err := bob.Fetch(ctx, "inbox", 0, 4)
	if err != nil || len(msgs) != 1 || string(msgs[0].GetKey()) != "bob" || string(msgs[0].GetValue()) != "forged" {
		t.Fatalf("bob reads %v %v, want his record keyed bob", msgs, err)
	}
}
