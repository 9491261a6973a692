package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// fakeGateway serves the pub-sub protocol with mux and keeps what clients
// sent: the upgrade headers and every request.
type fakeGateway struct {
	url string

	mu       sync.Mutex
	headers  []http.Header
	requests []*pb.PubSubReq
}

func newFakeGateway(t *testing.T, mux *pubsub.Mux) *fakeGateway {
	t.Helper()
	g := &fakeGateway{}
	ctx, cancel := context.WithCancel(context.Background())
	var sessions sync.WaitGroup
	recorder := pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		g.mu.Lock()
		g.requests = append(g.requests, proto.Clone(req.Msg).(*pb.PubSubReq))
		g.mu.Unlock()
		return mux.ServePubSub(ctx, req)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.headers = append(g.headers, r.Header.Clone())
		g.mu.Unlock()
		conn, _, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			pubsub.Serve(ctx, conn, recorder, pubsub.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		}()
	}))
	t.Cleanup(func() {
		cancel()
		sessions.Wait()
		srv.Close()
	})
	g.url = "ws://" + strings.TrimPrefix(srv.URL, "http://") + "/kafka"
	return g
}

// sent returns the requests of one command the gateway received.
func (g *fakeGateway) sent(match func(*pb.PubSubReq) bool) []*pb.PubSubReq {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*pb.PubSubReq
	for _, r := range g.requests {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// A partition whose pushes never reach the end of the log (the records
// after the reader's position are hidden by its filters): the subscription
// and the fetch that -e sends to find where the partition goes on carry
// the filter flags, the upgrade carries the token, and -e ends.
func TestFilterFlagsGoOnTheSubscriptionAndTheEndProbe(t *testing.T) {
	mux := pubsub.NewMux()
	mux.On(pubsub.CmdKafkaSubscribe, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaSubscribeResp{KafkaSubscribeResp: &pb.KafkaSubscribeResp{
			Partitions: []*pb.KafkaPartitionOffset{{Partition: 2, Offset: 10}},
		}}}, nil
	}))
	mux.On(pubsub.CmdKafkaListOffset, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaListOffsetResp{KafkaListOffsetResp: &pb.KafkaListOffsetResp{Offset: 500}}}, nil
	}))
	mux.On(pubsub.CmdKafkaFetch, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		// Nothing visible from the offset asked for up to 200, then up to
		// the end.
		next := int64(200)
		if req.Msg.GetCmdKafkaFetch().GetOffset() >= 200 {
			next = 500
		}
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{NextOffset: next}}}, nil
	}))
	g := newFakeGateway(t, mux)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, []string{"-url", g.url, "-t", "orders", "-p", "2", "-e", "-token-file", tokenFile,
		"-filter-key", "user-1", "-filter-header", "tenant=acme", "-filter-header", "region=eu=west"}, nil, &stdout, &stderr)
	if code != 0 || stdout.Len() != 0 || ctx.Err() != nil {
		t.Fatalf("exit %d, stdout %q, stderr %q, %v", code, stdout.String(), stderr.String(), ctx.Err())
	}

	want := &pb.KafkaFilter{Key: []byte("user-1"), Headers: []*pb.KafkaHeader{
		{Key: "tenant", Value: []byte("acme")}, {Key: "region", Value: []byte("eu=west")},
	}}
	subs := g.sent(func(r *pb.PubSubReq) bool { return r.GetCmdKafkaSubscribe() != nil })
	if len(subs) != 1 || !proto.Equal(subs[0].GetCmdKafkaSubscribe().GetFilter(), want) ||
		len(subs[0].GetCmdKafkaSubscribe().GetPartitions()) != 1 || subs[0].GetCmdKafkaSubscribe().GetPartitions()[0] != 2 {
		t.Errorf("subscriptions %v, want one of partition 2 with filter %v", subs, want)
	}
	fetches := g.sent(func(r *pb.PubSubReq) bool { return r.GetCmdKafkaFetch() != nil })
	if len(fetches) != 2 {
		t.Fatalf("fetches %v, want two probes (from 10, then from 200)", fetches)
	}
	for i, from := range []int64{10, 200} {
		f := fetches[i].GetCmdKafkaFetch()
		if f.GetOffset() != from || f.GetPartition() != 2 || f.GetTopic() != "orders" || !proto.Equal(f.GetFilter(), want) {
			t.Errorf("probe %d: %v, want orders/2 from %d with filter %v", i, f, from, want)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if got := g.headers[0].Get("Authorization"); got != "Bearer tok-123" {
		t.Errorf("upgrade Authorization %q, want the token of -token-file", got)
	}
}

func TestWithoutFilterFlagsRequestsCarryNoFilter(t *testing.T) {
	o, err := parseArgs([]string{"-t", "orders"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if f := subscribeCmd(o, nil).GetFilter(); f != nil {
		t.Errorf("subscription filter %v, want none", f)
	}
	if f := probeCmd(o, 0, 0).GetFilter(); f != nil {
		t.Errorf("probe filter %v, want none", f)
	}
}

func TestSubscribeCommandOfEachStart(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want *pb.CmdKafkaSubscribe
	}{
		{[]string{"-t", "o"}, &pb.CmdKafkaSubscribe{Topic: "o", Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}}},
		{[]string{"-t", "o", "-o", "end", "-p", "3"}, &pb.CmdKafkaSubscribe{Topic: "o", Partitions: []int32{3}, Start: &pb.CmdKafkaSubscribe_Latest{Latest: true}}},
		{[]string{"-t", "o", "-o", "42"}, &pb.CmdKafkaSubscribe{Topic: "o", Start: &pb.CmdKafkaSubscribe_Offset{Offset: 42}}},
		{[]string{"-t", "o", "-o", "s@1700000000000", "-G", "g"}, &pb.CmdKafkaSubscribe{Topic: "o", Group: "g", Start: &pb.CmdKafkaSubscribe_Timestamp{Timestamp: 1700000000000}}},
	} {
		o, err := parseArgs(tc.args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if got := subscribeCmd(o, nil); !proto.Equal(got, tc.want) {
			t.Errorf("%q: %v, want %v", tc.args, got, tc.want)
		}
	}
	o, _ := parseArgs([]string{"-t", "o", "-o", "-5"}, io.Discard)
	got := subscribeCmd(o, map[int32]int64{0: 7, 1: 0})
	if len(got.GetOffsets()) != 2 || got.GetOffsets()[0] != 7 {
		t.Errorf("-o -5: %v, want the offsets of every partition", got)
	}
}

// subscribeThenPush answers a subscription with starts, then pushes each
// of pushes.
func subscribeThenPush(starts []*pb.KafkaPartitionOffset, pushes ...*pb.PubSubResp) pubsub.Handler {
	return pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		ack := &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaSubscribeResp{KafkaSubscribeResp: &pb.KafkaSubscribeResp{Partitions: starts}}}
		for _, r := range append([]*pb.PubSubResp{ack}, pushes...) {
			if err := req.Push(ctx, r); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
}

// records is a push of partition p's records at offsets.
func records(p int32, offsets ...int64) *pb.PubSubResp {
	f := &pb.KafkaFetchResp{Topic: "orders", Partition: p, NextOffset: offsets[len(offsets)-1] + 1}
	for _, o := range offsets {
		f.Messages = append(f.Messages, &pb.KafkaMessage{Offset: o, Value: []byte("v")})
	}
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: f}}
}

// endAt answers every list offset with end.
func endAt(end int64) pubsub.Handler {
	return pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaListOffsetResp{KafkaListOffsetResp: &pb.KafkaListOffsetResp{Offset: end}}}, nil
	})
}

// runFake runs the command against the fake gateway with args and returns
// its exit status and output.
func runFake(t *testing.T, g *fakeGateway, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, append([]string{"-url", g.url}, args...), nil, &stdout, &stderr)
	if ctx.Err() != nil {
		t.Fatalf("did not exit: stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	return code, stdout.String(), stderr.String()
}

// Records written after the end of the log was taken, pushed together with
// the last records before it (and before the reader learned where the log
// ends), are not printed by -e.
func TestEndCutsAPushAtTheEndOfTheLogAsItWas(t *testing.T) {
	mux := pubsub.NewMux()
	mux.On(pubsub.CmdKafkaListOffset, endAt(3))
	mux.On(pubsub.CmdKafkaSubscribe, subscribeThenPush([]*pb.KafkaPartitionOffset{{Partition: 0, Offset: 0}}, records(0, 0, 1, 2, 3, 4)))
	code, stdout, stderr := runFake(t, newFakeGateway(t, mux), "-t", "orders", "-e", "-f", `%o\n`)
	if code != 0 || stdout != "0\n1\n2\n" {
		t.Fatalf("exit %d, printed %q, stderr %q; want offsets 0 to 2", code, stdout, stderr)
	}
}

func TestAPartitionThatFailsEndsTheCommandWithTheServersMessage(t *testing.T) {
	mux := pubsub.NewMux()
	const message = "failed to subscribe, topic: orders, partition: 1, err: OFFSET_OUT_OF_RANGE"
	mux.On(pubsub.CmdKafkaSubscribe, subscribeThenPush(
		[]*pb.KafkaPartitionOffset{{Partition: 0, Offset: 0}, {Partition: 1, Offset: 0}},
		records(0, 0),
		&pb.PubSubResp{Resp: &pb.PubSubResp_ErrorResp{ErrorResp: &pb.ErrorResp{Message: message}}},
	))
	code, stdout, stderr := runFake(t, newFakeGateway(t, mux), "-t", "orders", "-f", `%p:%o\n`)
	if code != 1 || stdout != "0:0\n" || stderr != "pubsub-client: "+message+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want the record before the failure, then exit 1 with the message", code, stdout, stderr)
	}
}

func TestAGroupMemberCommitsWhatItPrintedAlsoWhenItFails(t *testing.T) {
	mux := pubsub.NewMux()
	const message = "failed to subscribe, topic: orders, partition: 0, err: UNKNOWN_TOPIC_OR_PARTITION"
	mux.On(pubsub.CmdKafkaSubscribe, subscribeThenPush(nil,
		&pb.PubSubResp{Resp: &pb.PubSubResp_KafkaAssignment{KafkaAssignment: &pb.KafkaAssignment{Topic: "orders", Assigned: []int32{0}}}},
		records(0, 0, 1),
		&pb.PubSubResp{Resp: &pb.PubSubResp_ErrorResp{ErrorResp: &pb.ErrorResp{Message: message}}},
	))
	mux.On(pubsub.CmdKafkaCommit, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaCommitResp{KafkaCommitResp: &pb.KafkaCommitResp{}}}, nil
	}))
	g := newFakeGateway(t, mux)
	code, stdout, stderr := runFake(t, g, "-t", "orders", "-G", "g-1", "-f", `%o\n`)
	if code != 1 || stdout != "0\n1\n" || !strings.Contains(stderr, message) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	commits := g.sent(func(r *pb.PubSubReq) bool { return r.GetCmdKafkaCommit() != nil })
	want := &pb.CmdKafkaCommit{Group: "g-1", Topic: "orders", Offsets: []*pb.KafkaPartitionOffset{{Partition: 0, Offset: 2}}}
	if len(commits) != 1 || !proto.Equal(commits[0].GetCmdKafkaCommit(), want) {
		t.Fatalf("commits %v, want %v", commits, want)
	}
}

func TestAGroupMemberCommitsARevokedPartitionBeforeItsLastCommit(t *testing.T) {
	assignment := func(a *pb.KafkaAssignment) *pb.PubSubResp {
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaAssignment{KafkaAssignment: a}}
	}
	mux := pubsub.NewMux()
	mux.On(pubsub.CmdKafkaSubscribe, subscribeThenPush(nil,
		assignment(&pb.KafkaAssignment{Assigned: []int32{0, 1}}),
		records(0, 0, 1), records(1, 0),
		assignment(&pb.KafkaAssignment{Revoked: []int32{0}}),
		records(0, 2), // after its revocation: not printed
		records(1, 1),
	))
	mux.On(pubsub.CmdKafkaCommit, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaCommitResp{KafkaCommitResp: &pb.KafkaCommitResp{}}}, nil
	}))
	g := newFakeGateway(t, mux)
	code, stdout, stderr := runFake(t, g, "-t", "orders", "-G", "g-1", "-c", "4", "-f", `%p:%o\n`)
	if code != 0 || stdout != "0:0\n0:1\n1:0\n1:1\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	var got []string
	for _, r := range g.sent(func(r *pb.PubSubReq) bool { return r.GetCmdKafkaCommit() != nil }) {
		for _, o := range r.GetCmdKafkaCommit().GetOffsets() {
			got = append(got, fmt.Sprintf("%d:%d", o.GetPartition(), o.GetOffset()))
		}
	}
	if want := []string{"0:2", "1:2"}; !slices.Equal(got, want) {
		t.Fatalf("commits %q, want %q in that order", got, want)
	}
}

// A member whose partitions are all revoked is not at the end of anything:
// with -e it reads the partitions the group assigns next.
func TestAGroupMemberWithEveryPartitionRevokedWaitsForTheNextAssignment(t *testing.T) {
	assignment := func(a *pb.KafkaAssignment) *pb.PubSubResp {
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaAssignment{KafkaAssignment: a}}
	}
	mux := pubsub.NewMux()
	mux.On(pubsub.CmdKafkaSubscribe, subscribeThenPush(nil,
		assignment(&pb.KafkaAssignment{Assigned: []int32{0}}),
		records(0, 0),
		assignment(&pb.KafkaAssignment{Revoked: []int32{0}}),
		assignment(&pb.KafkaAssignment{Assigned: []int32{1}}),
		records(1, 0),
	))
	mux.On(pubsub.CmdKafkaListOffset, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		if req.Msg.GetCmdKafkaListOffset().GetPartition() == 0 {
			<-ctx.Done() // partition 0 is revoked before its end is known
			return nil, ctx.Err()
		}
		off := int64(1) // partition 1 holds offset 0 only
		if req.Msg.GetCmdKafkaListOffset().GetTimestamp() == -2 {
			off = 0
		}
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaListOffsetResp{KafkaListOffsetResp: &pb.KafkaListOffsetResp{Offset: off}}}, nil
	}))
	mux.On(pubsub.CmdKafkaCommitted, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		p := req.Msg.GetCmdKafkaCommitted().GetPartitions()[0]
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaCommittedResp{KafkaCommittedResp: &pb.KafkaCommittedResp{
			Offsets: []*pb.KafkaPartitionOffset{{Partition: p, Offset: -1}},
		}}}, nil
	}))
	mux.On(pubsub.CmdKafkaCommit, pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaCommitResp{KafkaCommitResp: &pb.KafkaCommitResp{}}}, nil
	}))
	code, stdout, stderr := runFake(t, newFakeGateway(t, mux), "-t", "orders", "-G", "g-1", "-e", "-f", `%p:%o\n`)
	if code != 0 || stdout != "1:0\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want the record of the partition assigned last", code, stdout, stderr)
	}
}
