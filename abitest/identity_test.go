package abitest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// jwtAuthnNamespace is where Envoy's jwt_authn puts the verified payload.
const jwtAuthnNamespace = "envoy.filters.http.jwt_authn"

// TestIdentityThroughTheSharedLibrary drives the real .so the way Envoy
// does after jwt_authn: the verified payload in dynamic metadata becomes the
// session's identity through the ticket. Without it identity.required
// refuses the upgrade with 401; with it the session reads its own topic
// only and ends with 4401 at the payload's exp. A session whose payload
// holds a list of tenants (a string and a number, as jwt_authn's metadata
// gives them) fetches and subscribes to a shared topic and is given exactly
// the records of its tenants, past a long run of another tenant's.
func TestIdentityThroughTheSharedLibrary(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Fatal("gcc not found: the ABI test builds a fake Envoy host in C and needs a C compiler (install gcc)")
	}
	work := t.TempDir()
	so := buildLibrary(t, filepath.Join(work, "envoy-pubsub.so"))
	host := buildHost(t, filepath.Join(work, "fakeenvoy"))
	kafka := testkit.Kafka(t, kfake.SeedTopics(1, "user.alice", "user.bob", "orders"))

	sock := shortSocketPath(t)
	filterCfg := writeConfig(t, work, "filter.pb", map[string]any{
		"listener": sock,
		"identity": map[string]any{"required": true, "envoy_jwt_metadata": "jwt_payload"},
		"kafka_clusters": map[string]any{
			"kafka": map[string]any{
				"brokers": toAny(kafka.ListenAddrs()),
				"access": []any{
					map[string]any{"read": []any{"user.{sub}"}},
					map[string]any{"read": []any{"orders"}, "records": map[string]any{"headers": map[string]any{"tenant": "{tenant}"}}},
				},
			},
		},
	})
	exp := time.UnixMilli(time.Now().Add(3 * time.Second).UnixMilli())
	const tenant = "tenant-claim-never-logged"
	payload := writeMetadata(t, work, "jwt.pb", map[string]any{"jwt_payload": map[string]any{
		"sub": "alice", "tenant": tenant, "exp": float64(exp.UnixMilli()) / 1000,
	}})

	e := startHost(t, host, so)
	e.expect(t, "LOADED")
	filterID := e.config(t, "filter", filterCfg)
	if filterID == 0 {
		t.Fatalf("filter config rejected; log:\n%s", e.log())
	}
	upgrade := []string{":method=GET", ":path=/kafka", ":authority=gateway", "connection=Upgrade", "upgrade=websocket", "sec-websocket-version=13"}

	// No verified token: 401, no ticket.
	r := e.requestEnded(t, filterID, "kafka", 0, upgrade...)
	if r.status != statusLocalReply || !strings.HasPrefix(r.reply, "401 ") || len(r.headers["x-pubsub-ticket"]) != 0 {
		t.Fatalf("upgrade without identity: %+v, want a 401 local reply", r)
	}

	// jwt_authn verified a token: its payload travels in the ticket.
	e.send(t, "metadata "+jwtAuthnNamespace+" "+payload)
	e.expect(t, "OK")
	r = e.request(t, filterID, "kafka", 1, upgrade...)
	if r.status != statusContinue || len(r.headers["x-pubsub-ticket"]) != 1 {
		t.Fatalf("upgrade with identity: %+v; log:\n%s", r, e.log())
	}
	c, err := dial(sock, r.headers["x-pubsub-ticket"][0])
	if err != nil {
		t.Fatalf("redeeming the ticket: %v\nlog:\n%s", err, e.log())
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.ListOffset(ctx, "user.alice", 0, -1); err != nil {
		t.Fatalf("own topic: %v", err)
	}
	if _, err := c.Fetch(ctx, "user.bob", 0, 0); err == nil || !strings.HasSuffix(err.Error(), "topic not allowed") {
		t.Fatalf("another user's topic: %v, want topic not allowed", err)
	}
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the session outlived its token")
	}
	var ce client.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != 4401 || ce.Reason != "token expired" {
		t.Fatalf("session ended with %v, want 4401 token expired", c.Err())
	}
	if time.Now().Before(exp) {
		t.Fatalf("session ended before exp %v", exp)
	}

	e.end(t, r) // the stream ends with the session

	// A tenant-scoped session: payload tenant [tenant, 7].
	orders, want := tenantOrders(t, kafka.ListenAddrs(), tenant, "7")
	scoped := writeMetadata(t, work, "jwt-scoped.pb", map[string]any{"jwt_payload": map[string]any{
		"sub": "carol", "tenant": []any{tenant, 7}, "exp": float64(time.Now().Add(time.Minute).Unix()),
	}})
	e.send(t, "metadata "+jwtAuthnNamespace+" "+scoped)
	e.expect(t, "OK")
	// A browser's token comes in the query: the library never writes it.
	const queryToken = "query-token-never-logged"
	fromBrowser := slices.Clone(upgrade)
	fromBrowser[slices.Index(upgrade, ":path=/kafka")] = ":path=/kafka?access_token=" + queryToken
	r = e.request(t, filterID, "kafka", 0, fromBrowser...)
	if r.status != statusContinue || len(r.headers["x-pubsub-ticket"]) != 1 {
		t.Fatalf("scoped upgrade: %+v; log:\n%s", r, e.log())
	}
	sc, err := dial(sock, r.headers["x-pubsub-ticket"][0])
	if err != nil {
		t.Fatalf("redeeming the scoped ticket: %v\nlog:\n%s", err, e.log())
	}
	if got := fetchAll(t, sc, "orders", orders); !slices.Equal(got, want) {
		t.Errorf("scoped fetches: %v, want %v", got, want)
	}
	sub, err := sc.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "orders", Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	if got := pushedUntil(t, sub, orders); !slices.Equal(got, want) {
		t.Errorf("scoped subscription: %v, want %v", got, want)
	}
	sc.Close()
	e.end(t, r)

	e.send(t, "metadata "+jwtAuthnNamespace+" -")
	e.expect(t, "OK")
	e.send(t, fmt.Sprintf("destroy %d", filterID))
	e.expect(t, fmt.Sprintf("DESTROYED %d", filterID))
	fin, violations := e.finish(t)
	if fin[0] != fin[1] || fin[2] != fin[3] {
		t.Errorf("finalized %d of %d requests and %d of %d configs", fin[0], fin[1], fin[2], fin[3])
	}
	if violations != 0 {
		t.Errorf("%d ABI rule violations; log:\n%s", violations, e.log())
	}
	if strings.Contains(e.log(), tenant) {
		t.Error("the library logged a claim")
	}
	if strings.Contains(e.log(), queryToken) {
		t.Error("the library logged the access_token query parameter")
	}
}

// tenantOrders writes to orders, one partition, records of the tenants
// mine and others', with a long run of others' in between; it returns the
// end of the log and the offsets of mine's records.
func tenantOrders(t *testing.T, brokers []string, mine ...string) (end int64, offsets []int64) {
	t.Helper()
	var recs []testkit.Record
	add := func(n int, tenant string) {
		for range n {
			if slices.Contains(mine, tenant) {
				offsets = append(offsets, int64(len(recs)))
			}
			recs = append(recs, testkit.Record{Value: tenant, Headers: []kgo.RecordHeader{{Key: "tenant", Value: []byte(tenant)}}})
		}
	}
	add(1, mine[0])
	add(1, "*")
	add(2000, "others")
	add(1, mine[1])
	add(1, mine[0])
	add(500, "others")
	testkit.Produce(t, brokers, "orders", 0, recs)
	return int64(len(recs)), offsets
}

// fetchAll fetches partition 0 of topic from offset 0 to end, following
// next_offset, and returns the offsets of the records it was given.
func fetchAll(t *testing.T, c *client.Client, topic string, end int64) []int64 {
	t.Helper()
	var got []int64
	for next := int64(0); next < end; {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		fr, err := c.FetchReply(ctx, &pb.CmdKafkaFetch{Topic: topic, Offset: next})
		cancel()
		if err != nil {
			t.Fatalf("fetch at %d: %v", next, err)
		}
		for _, m := range fr.GetMessages() {
			got = append(got, m.GetOffset())
		}
		if fr.GetNextOffset() <= next {
			t.Fatalf("fetch at %d: next_offset %d", next, fr.GetNextOffset())
		}
		next = fr.GetNextOffset()
	}
	return got
}

// pushedUntil reads sub's pushes until their next_offset reaches end and
// returns the offsets of the records pushed.
func pushedUntil(t *testing.T, sub *client.Subscription, end int64) []int64 {
	t.Helper()
	var got []int64
	timeout := time.After(20 * time.Second)
	for next := int64(0); next < end; {
		select {
		case resp := <-sub.C():
			fr := resp.GetKafkaFetchResp()
			if fr == nil {
				t.Fatalf("push %v", resp)
			}
			for _, m := range fr.GetMessages() {
				got = append(got, m.GetOffset())
			}
			next = fr.GetNextOffset()
		case <-timeout:
			t.Fatalf("pushes stopped at %d of %d: %v", next, end, got)
		}
	}
	return got
}

// writeMetadata writes ns as the serialized google.protobuf.Struct Envoy
// hands the library for one dynamic metadata namespace.
func writeMetadata(t *testing.T, dir, name string, ns map[string]any) string {
	t.Helper()
	s, err := structpb.NewStruct(ns)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
