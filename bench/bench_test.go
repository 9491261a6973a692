package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/envoy-pubsub/gateway/internal/testkit"
)

// TestMain lets the test binary serve as the broker and gateway children
// that Run starts from its own executable.
func TestMain(m *testing.M) {
	if isChild, err := RunChild(os.Args[1:]); isChild {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestRunMeasuresEverythingOnATinyScale(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	// Two rounds, so that the real-data ratios are a median of paired rounds.
	cfg := Config{
		ValueSizes: []int{100}, MBPerSize: 0.02, Runs: 2, Sessions: []int{1, 2},
		IdleSessions: []int{5, 10}, LatencySamples: 20, FanoutSessions: 3, FanoutRecords: 30,
		Codecs: []string{"snappy"}, EventMB: 0.05, SharedSessions: []int{1, 2},
		PushSessions: []int{2}, PushRecords: 20, PushRate: 2000, CacheBytes: 16 << 20, WindowBytes: 1 << 20,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	res, err := Run(ctx, cfg, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if len(res.Throughput) != 3 {
		t.Fatalf("throughput rows %+v, want direct and 2 session counts", res.Throughput)
	}
	for _, r := range res.Throughput {
		if r.Records != 200 || r.RecordsPerS <= 0 || r.OfDirect <= 0 {
			t.Errorf("row %+v: want 200 records (0.02 MB of 100 B over 2 partitions) and rates", r)
		}
	}
	if l := res.Latency; l.Ping.Samples != 20 || l.Fetch.Samples != 20 || l.ProduceToClient.Samples != 20 || l.Fetch.P50 <= 0 {
		t.Errorf("latency %+v", l)
	}
	if f := res.Fanout; f.Delivered != 90 || f.FetchRequests == 0 || f.BytesPerRecord <= 0 {
		t.Errorf("fan-out %+v: want 3 sessions x 30 records delivered and counted fetches", f)
	}
	if s := res.Sessions; len(s.Steps) != 2 || s.Steps[1].Sessions != 10 || s.Steps[1].Heap == 0 || s.HandshakesPerS <= 0 {
		t.Errorf("sessions %+v", s)
	}
	if s := res.Sessions.Subscribed; len(s) != 2 || s[1].Sessions != 10 || s[1].Heap == 0 {
		t.Errorf("subscribed idle sessions %+v", s)
	}
	if len(res.RealData) != 1 || len(res.RealData[0].Rows) != 2 {
		t.Fatalf("real data %+v, want one codec read by 1 and 2 readers", res.RealData)
	}
	run := res.RealData[0]
	if run.Codec != "snappy" || run.Records != 111 || run.CompressedBytes <= 0 || run.CompressedBytes >= run.BatchBytes {
		t.Errorf("real data %+v: want 111 events (0.05 MB of about 450 B) in batches that snappy shrank", run)
	}
	for i, r := range run.Rows {
		if r.Readers != i+1 || r.DirectPerS <= 0 || r.GatewayPerS <= 0 || r.OfDirect <= 0 || r.Cost.CPUPerRecord <= 0 || r.Cost.PeakRSS == 0 {
			t.Errorf("real data row %+v", r)
		}
		if r.WarmPerS <= 0 || r.WarmOfDirect <= 0 {
			t.Errorf("real data row %+v: no second read", r)
		}
		for _, ratio := range [][3]float64{{r.OfDirectMin, r.OfDirect, r.OfDirectMax}, {r.WarmOfDirectMin, r.WarmOfDirect, r.WarmOfDirectMax}} {
			if lo, median, hi := ratio[0], ratio[1], ratio[2]; lo <= 0 || lo > hi || math.Abs(median-(lo+hi)/2) > 1e-9*hi {
				t.Errorf("real data row %+v: ratios %v, want the median of two rounds between their min and max", r, ratio)
			}
		}
		if i == 0 && r.FetchBytesPerRecord <= 0 {
			t.Errorf("real data row %+v: the gateway's first read of the topic fetched nothing from Kafka", r)
		}
		if c := r.Cost; c.CacheLimit != 16<<20 || c.PeakCacheBytes <= 0 || c.PeakCacheBytes > c.CacheLimit {
			t.Errorf("real data row %+v: want the decoded cache seen holding records, within the configured 16 MiB", r)
		}
	}
	if len(res.Push) != 1 || res.Push[0].Rounds != 2 || res.Push[0].Latency.Samples != 80 || res.Push[0].Cost.CPUPerRecord <= 0 {
		t.Errorf("push %+v, want 2 rounds of 2 subscribers x 20 records timed", res.Push)
	} else if r := res.Push[0]; !validSpread(r.P50) || !validSpread(r.P99) || !validSpread(r.CPUPerRecord) || r.P99.Median < r.P50.Median {
		t.Errorf("push %+v, want each round's p50, p99 and CPU, a p99 above the p50", r)
	}
	dir := t.TempDir()
	if err := Write(dir, res, &res); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{ResultsJSON, ResultsMarkdown, ThroughputChart, MachineText} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
	back, err := ReadResults(filepath.Join(dir, ResultsJSON))
	if err != nil || back.Throughput[1].RecordsPerS != res.Throughput[1].RecordsPerS {
		t.Errorf("results read back: %v", err)
	}
}

func TestRawClientSpeaksTheProtocol(t *testing.T) {
	for _, kind := range []string{ClientRaw, ClientProto} {
		t.Run(kind, func(t *testing.T) { testClientSpeaksTheProtocol(t, kind) })
	}
}

func testClientSpeaksTheProtocol(t *testing.T, kind string) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	testkit.Produce(t, k.ListenAddrs(), "t", 0, testkit.Numbered(3))
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "", ""), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := dialSession(ctx, kind, srv.URL("kafka"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.ping(); err != nil {
		t.Fatalf("ping: %v", err)
	}
	for ts, want := range map[int64]int64{-2: 0, -1: 3} {
		if got, err := c.listOffset("t", 0, ts); err != nil || got != want {
			t.Errorf("list offset %d: %d, %v; want %d", ts, got, err, want)
		}
	}
	var got []string
	err = c.fetch("t", 0, 1, func(offset int64, value []byte) error {
		got = append(got, fmt.Sprintf("%d=%s", offset, value))
		return nil
	})
	if err != nil || strings.Join(got, " ") != "1=v1 2=v2" {
		t.Errorf("fetch from 1: %v, %v", got, err)
	}
	err = c.fetch("t", 7, 0, func(int64, []byte) error { return nil })
	var se *errServer
	if !errors.As(err, &se) || !strings.HasPrefix(se.message, "failed to fetch message, topic: t, partition: 7, err: ") {
		t.Errorf("fetch of a missing partition: %v, want an error_resp", err)
	}
	if err := c.ping(); err != nil {
		t.Errorf("session unusable after an error_resp: %v", err)
	}
}

func TestPercentilesPickTheRankedSample(t *testing.T) {
	ds := make([]time.Duration, 1000)
	for i := range ds {
		ds[len(ds)-1-i] = time.Duration(i+1) * time.Millisecond // reversed: must be sorted
	}
	p := percentilesOf(ds)
	if p.Samples != 1000 || p.P50 != 501 || p.P99 != 991 || p.P999 != 1000 || p.Max != 1000 {
		t.Fatalf("%+v", p)
	}
}

func TestUpdateDocReplacesOnlyTheResultsSection(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	before, after := "# Title\n\nprose\n", "\n![chart](x.png)\n"
	if err := os.WriteFile(path, []byte(before+docBegin+"\nold figures\n"+docEnd+after), 0o644); err != nil {
		t.Fatal(err)
	}
	res := Results{Throughput: []ThroughputRow{newThroughputRow("direct", 0, 100, 1000, time.Second)}, Config: Config{Sessions: []int{1}}}
	if err := UpdateDoc(path, res, nil); err != nil {
		t.Fatal(err)
	}
	doc, _ := os.ReadFile(path)
	text := string(doc)
	if !strings.HasPrefix(text, before+docBegin+"\n") || !strings.HasSuffix(text, docEnd+after) {
		t.Fatalf("text around the section changed:\n%s", text)
	}
	if strings.Contains(text, "old figures") || !strings.Contains(text, "| 100 B | direct franz-go | - | 1000 | 1000 |") {
		t.Fatalf("section not replaced:\n%s", text)
	}
	if err := os.WriteFile(path, []byte("no markers"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateDoc(path, res, nil); err == nil {
		t.Fatal("a file without markers was accepted")
	}
}

func TestChartHasARowPerReader(t *testing.T) {
	rows := []ThroughputRow{
		newThroughputRow("direct", 0, 100, 1000, time.Second),
		newThroughputRow("gateway", 1, 100, 1000, 2*time.Second),
	}
	rows[0].OfDirect, rows[1].OfDirect = 1, 0.5
	one, err := throughputChart(Results{Throughput: rows})
	if err != nil {
		t.Fatal(err)
	}
	two, err := throughputChart(Results{Throughput: append(rows, rows...)})
	if err != nil {
		t.Fatal(err)
	}
	img1, err1 := png.Decode(bytes.NewReader(one))
	img2, err2 := png.Decode(bytes.NewReader(two))
	if err1 != nil || err2 != nil {
		t.Fatalf("not PNG: %v, %v", err1, err2)
	}
	if img1.Bounds().Dx() != chartWidth || img2.Bounds().Dy() <= img1.Bounds().Dy() {
		t.Fatalf("sizes %v and %v", img1.Bounds(), img2.Bounds())
	}
}

func TestBestKeepsEachFiguresBestRun(t *testing.T) {
	run := func(direct, gateway time.Duration, p99 float64, heap float64) Results {
		return Results{
			Throughput: []ThroughputRow{
				newThroughputRow("direct", 0, 100, 1000, direct),
				newThroughputRow("gateway", 1, 100, 1000, gateway),
			},
			Latency:  LatencyResult{Fetch: Percentiles{Samples: 10, P50: p99 / 2, P99: p99}},
			Sessions: SessionsResult{Steps: []IdleStep{{Sessions: 10, HeapPerSession: heap}}},
		}
	}
	best, err := Best(run(time.Second, 4*time.Second, 2, 7000), run(2*time.Second, 2*time.Second, 1, 6000))
	if err != nil {
		t.Fatal(err)
	}
	if best.Merged != 2 || best.Throughput[0].RecordsPerS != 1000 || best.Throughput[1].RecordsPerS != 500 {
		t.Fatalf("throughput %+v (merged %d): want the fastest run of each reader", best.Throughput, best.Merged)
	}
	if best.Throughput[1].OfDirect != 0.5 {
		t.Errorf("of direct %v, want 0.5 against the best direct run", best.Throughput[1].OfDirect)
	}
	if best.Latency.Fetch.P99 != 1 || best.Latency.Fetch.P50 != 0.5 || best.Sessions.Steps[0].HeapPerSession != 6000 {
		t.Errorf("latency %+v, sessions %+v: want the second run's", best.Latency.Fetch, best.Sessions)
	}
	shared := func(ofDirect, lo, hi float64) Results {
		return Results{RealData: []RealDataRun{{Codec: "zstd", Rows: []SharedRow{{Readers: 10, OfDirect: ofDirect, OfDirectMin: lo, OfDirectMax: hi}}}}}
	}
	// The second run's largest round is the highest of all, its median is not.
	best, _ = Best(shared(0.4, 0.3, 0.5), shared(0.5, 0.45, 0.9), shared(0.6, 0.55, 0.65))
	if r := best.RealData[0].Rows[0]; r.OfDirect != 0.6 || r.OfDirectMin != 0.55 || r.OfDirectMax != 0.65 {
		t.Errorf("real data %+v: want the row of the highest median, whole", best.RealData)
	}
	if _, err := Best(); err == nil {
		t.Error("nothing to combine was accepted")
	}
}

func TestEventsAreVariedJSONOfAFewHundredBytes(t *testing.T) {
	events := newEventSource(1)
	types := map[string]bool{}
	var total int
	const n = 1000
	for range n {
		v := events.next()
		var e event
		if err := json.Unmarshal(v, &e); err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		if err := isJSONObject(v); err != nil {
			t.Fatal(err)
		}
		types[e.Type] = true
		total += len(v)
	}
	if mean := total / n; mean < 200 || mean > 700 {
		t.Errorf("mean value %d B, want a few hundred", mean)
	}
	if len(types) != len(eventTypes) {
		t.Errorf("event types %v, want all of %v", types, eventTypes)
	}
	if a, b := newEventSource(7).next(), newEventSource(7).next(); !bytes.Equal(a, b) {
		t.Error("the same seed gave different events")
	}
}

func TestCompactEventsAreJSONOfAboutAHundredBytes(t *testing.T) {
	events := newEventSource(1)
	var total int
	const n = 1000
	for range n {
		v := events.nextCompact()
		var e compactEvent
		if err := json.Unmarshal(v, &e); err != nil || e.ID == "" || e.User == "" {
			t.Fatalf("%s: %+v, %v", v, e, err)
		}
		total += len(v)
	}
	if mean := total / n; mean < SmallEventBytes*8/10 || mean > SmallEventBytes*12/10 {
		t.Errorf("mean value %d B, want about %d", mean, SmallEventBytes)
	}
}

func TestParseCodecs(t *testing.T) {
	got, err := ParseCodecs("none, zstd,lz4")
	if err != nil || strings.Join(got, ",") != "none,zstd,lz4" {
		t.Errorf("%v, %v", got, err)
	}
	for _, bad := range []string{"brotli", "lz4,lz4", ""} {
		if _, err := ParseCodecs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// validSpread reports whether s holds positive figures in order.
func validSpread(s Spread) bool {
	return 0 < s.Min && s.Min <= s.Median && s.Median <= s.Max
}
