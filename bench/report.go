package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Files a run writes into its output directory.
const (
	ResultsJSON     = "results.json"
	ResultsMarkdown = "results.md"
	ThroughputChart = "throughput.png"
	MachineText     = "machine.txt"
)

// Markers delimit the generated figures inside BENCHMARKS.md.
const (
	docBegin = "<!-- pubsub-bench results: begin -->"
	docEnd   = "<!-- pubsub-bench results: end -->"
)

// Markdown renders the figures of res as tables, and when baseline is not
// nil, how they compare with it.
func Markdown(res Results, baseline *Results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	if res.Merged > 1 {
		p("Best of %d runs, the last of %s, on %s.", res.Merged, res.Started.Format("2006-01-02 15:04 UTC"), res.Machine)
	} else {
		p("Run of %s on %s.", res.Started.Format("2006-01-02 15:04 UTC"), res.Machine)
	}
	p("Broker (kfake, 1 node) and gateway (standalone server) each run in a child process; the direct consumer and the WebSocket clients (%s) run in the benchmark process.", clientName(res.Config.Client))
	p("")
	p("#### Throughput: a topic of %d partitions read from start to end", slices.Max(append([]int{1}, res.Config.Sessions...)))
	p("")
	p("The direct reader is one franz-go client consuming every partition; through the gateway, each session reads whole partitions (session i those with p mod sessions = i). Each figure is the fastest of %d rounds, each round running every reader once.", max(res.Config.Runs, 1))
	p("")
	p("| value | reader | sessions | records | records/s | MB/s | of direct |")
	p("|---:|---|---:|---:|---:|---:|---:|")
	for _, r := range res.Throughput {
		sessions := "-"
		if r.Reader != "direct" {
			sessions = fmt.Sprint(r.Sessions)
		}
		p("| %s | %s | %s | %d | %.0f | %.1f | %.0f%% |", sizeName(r.ValueBytes), readerName(r.Reader), sessions, r.Records, r.RecordsPerS, r.MBPerS, 100*r.OfDirect)
	}
	p("")
	p("#### Latency: one session, one request at a time")
	p("")
	p("| round trip | samples | p50 ms | p99 ms | p99.9 ms | max ms |")
	p("|---|---:|---:|---:|---:|---:|")
	for _, l := range []struct {
		name string
		p    Percentiles
	}{
		{"cmd_ping (gateway only)", res.Latency.Ping},
		{"cmd_kafka_fetch of one 100 B record", res.Latency.Fetch},
		{"produce to client (tight fetch loop)", res.Latency.ProduceToClient},
	} {
		p("| %s | %d | %.3f | %.3f | %.3f | %.3f |", l.name, l.p.Samples, l.p.P50, l.p.P99, l.p.P999, l.p.Max)
	}
	p("")
	p("#### Idle sessions: growth of the gateway process")
	p("")
	p("| idle sessions | heap + stacks per session | of which stacks | RSS per session | gateway goroutines |")
	p("|---|---:|---:|---:|---:|")
	for _, set := range []struct {
		name  string
		steps []IdleStep
	}{{"", res.Sessions.Steps}, {" subscribed", res.Sessions.Subscribed}} {
		for _, s := range set.steps {
			p("| %d%s | %s | %s | %s | %d |", s.Sessions, set.name, kib(s.HeapPerSession), kib(s.StackPerSession), kib(s.RSSPerSession), s.Goroutines)
		}
		if heap, rss, ok := Slope(set.steps, slopeFrom, slopeTo); ok {
			p("| slope %d to %d%s | %s | | %s | |", slopeFrom, slopeTo, set.name, kib(heap), kib(rss))
		}
	}
	p("")
	p("Handshakes: %.0f/s with %d concurrent dialers.", res.Sessions.HandshakesPerS, handshakeConcurrency)
	p("")
	f := res.Fanout
	p("#### Fan-out: %d sessions tailing one partition", f.Sessions)
	p("")
	p("| records produced | value | delivered | seconds | Kafka fetch requests | fetch bytes | requests per delivered record | bytes per delivered record |")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|")
	p("| %d | %s | %d | %.2f | %d | %d | %.3f | %.1f |", f.Records, sizeName(f.ValueBytes), f.Delivered, f.Seconds, f.FetchRequests, f.FetchBytes, f.RequestsPerRecord, f.BytesPerRecord)
	p("")
	if sub := res.Subscribe; sub.ProduceToClient.Samples > 0 || len(sub.Fanout) > 0 {
		subscriptions(p, sub, res.Latency.ProduceToClient)
	}
	if len(res.RealData) > 0 {
		realData(p, res.RealData, max(res.Config.Runs, 1))
	}
	if len(res.Push) > 0 {
		pushLatencies(p, res.Push)
	}
	p("#### Targets of issue 5 (aimed at, never asserted)")
	p("")
	p("| target | figure |")
	p("|---|---|")
	p("| one session >= 50%% of direct records/s | %s |", ofDirect(res.Throughput, 1))
	p("| 100 sessions aggregated >= 80%% of direct | %s |", ofDirect(res.Throughput, 100))
	if n := len(res.Sessions.Steps); n > 0 {
		s := res.Sessions.Steps[n-1]
		p("| idle session <= 16 KiB | %s heap + stacks, %s RSS (at %d sessions) |", kib(s.HeapPerSession), kib(s.RSSPerSession), s.Sessions)
	}
	p("| fetch p99 < 5 ms at light load | %.3f ms |", res.Latency.Fetch.P99)
	p("")
	issue12Targets(p, res)
	if baseline != nil {
		p("")
		b.WriteString(comparison(res, *baseline))
	}
	return b.String()
}

// comparison renders res next to an earlier run: each figure before and
// after, and after/before for throughput (higher is better) or before/after
// for times and memory (so that above 1 is always an improvement).
func comparison(res, base Results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("#### Compared with the baseline (%s)", runsOf(base))
	p("")
	p("Gain: above 1 is better (records/s: now / before; times and memory: before / now).")
	p("")
	p("| figure | before | now | gain |")
	p("|---|---:|---:|---:|")
	row := func(name string, before, now float64, format string, higherIsBetter bool) {
		if before == 0 || now == 0 {
			return
		}
		gain := before / now
		if higherIsBetter {
			gain = now / before
		}
		p("| %s | "+format+" | "+format+" | %.2f |", name, before, now, gain)
	}
	for _, r := range res.Throughput {
		for _, o := range base.Throughput {
			if o.Reader == r.Reader && o.Sessions == r.Sessions && o.ValueBytes == r.ValueBytes {
				name := fmt.Sprintf("%s, %s", sizeName(r.ValueBytes), readerName(r.Reader))
				if r.Reader != "direct" {
					name += fmt.Sprintf(", %d session%s", r.Sessions, plural(r.Sessions))
				}
				row(name, o.RecordsPerS, r.RecordsPerS, "%.0f rec/s", true)
			}
		}
	}
	row("cmd_ping p50", base.Latency.Ping.P50, res.Latency.Ping.P50, "%.3f ms", false)
	row("fetch round trip p50", base.Latency.Fetch.P50, res.Latency.Fetch.P50, "%.3f ms", false)
	row("fetch round trip p99", base.Latency.Fetch.P99, res.Latency.Fetch.P99, "%.3f ms", false)
	row("produce to client p50", base.Latency.ProduceToClient.P50, res.Latency.ProduceToClient.P50, "%.3f ms", false)
	row("produce to client p99", base.Latency.ProduceToClient.P99, res.Latency.ProduceToClient.P99, "%.3f ms", false)
	for _, s := range res.Sessions.Steps {
		for _, o := range base.Sessions.Steps {
			if o.Sessions == s.Sessions {
				row(fmt.Sprintf("heap + stacks per idle session (%d)", s.Sessions), o.HeapPerSession/1024, s.HeapPerSession/1024, "%.1f KiB", false)
			}
		}
	}
	row("handshakes", base.Sessions.HandshakesPerS, res.Sessions.HandshakesPerS, "%.0f/s", true)
	row("fan-out fetch bytes per delivered record", base.Fanout.BytesPerRecord, res.Fanout.BytesPerRecord, "%.1f B", false)
	for _, r := range res.Subscribe.Fanout {
		for _, o := range base.Subscribe.Fanout {
			if o.Sessions == r.Sessions {
				row(fmt.Sprintf("%d subscribers, delivered records/s", r.Sessions), o.RecordsPerS, r.RecordsPerS, "%.0f", true)
				row(fmt.Sprintf("%d subscribers, gateway CPU per delivered record", r.Sessions), o.Cost.CPUPerRecord, r.Cost.CPUPerRecord, "%.2f us", false)
			}
		}
	}
	for _, run := range res.RealData {
		for _, o := range base.RealData {
			if o.Codec != run.Codec {
				continue
			}
			for _, r := range run.Rows {
				for _, or := range o.Rows {
					if or.Readers == r.Readers {
						name := fmt.Sprintf("JSON %s, %d reader%s of one partition", run.Codec, r.Readers, plural(r.Readers))
						row(name+", of direct (median of rounds)", 100*or.OfDirect, 100*r.OfDirect, "%.0f%%", true)
						row(name+", gateway CPU per record", or.Cost.CPUPerRecord, r.Cost.CPUPerRecord, "%.2f us", false)
					}
				}
			}
		}
	}
	for _, r := range res.Push {
		for _, o := range base.Push {
			if o.Sessions == r.Sessions {
				row(fmt.Sprintf("push to %d subscribers p50 (median of rounds)", r.Sessions), o.roundsOr(o.P50, o.Latency.P50).Median, r.roundsOr(r.P50, r.Latency.P50).Median, "%.3f ms", false)
				row(fmt.Sprintf("push to %d subscribers p99 (median of rounds)", r.Sessions), o.roundsOr(o.P99, o.Latency.P99).Median, r.roundsOr(r.P99, r.Latency.P99).Median, "%.3f ms", false)
				row(fmt.Sprintf("push to %d subscribers, gateway CPU per delivered record (median of rounds)", r.Sessions), o.roundsOr(o.CPUPerRecord, o.Cost.CPUPerRecord).Median, r.roundsOr(r.CPUPerRecord, r.Cost.CPUPerRecord).Median, "%.2f us", false)
			}
		}
	}
	return b.String()
}

// ReadResults loads the JSON results of an earlier run.
func ReadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &res, nil
}

func runsOf(res Results) string {
	if res.Merged > 1 {
		return fmt.Sprintf("best of %d runs, the last of %s", res.Merged, res.Started.Format("2006-01-02 15:04 UTC"))
	}
	return "run of " + res.Started.Format("2006-01-02 15:04 UTC")
}

// subscriptions renders the subscription figures next to polling's.
func subscriptions(p func(string, ...any), sub SubscribeResult, polling Percentiles) {
	p("#### Subscriptions: the server pushes, sessions share one broker fetch stream")
	p("")
	p("| produce to client | samples | p50 ms | p99 ms | p99.9 ms | max ms |")
	p("|---|---:|---:|---:|---:|---:|")
	for _, l := range []struct {
		name string
		p    Percentiles
	}{
		{"subscribed (server push)", sub.ProduceToClient},
		{"tight fetch loop (polling)", polling},
	} {
		p("| %s | %d | %.3f | %.3f | %.3f | %.3f |", l.name, l.p.Samples, l.p.P50, l.p.P99, l.p.P999, l.p.Max)
	}
	p("")
	p("| subscribed sessions | records produced | value | delivered | seconds | delivered records/s | Kafka fetch requests | requests per delivered record | gateway CPU per delivered record | gateway peak RSS | peak decoded cache |")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range sub.Fanout {
		p("| %d | %d | %s | %d | %.2f | %.0f | %d | %.5f | %s | %s | %s |", r.Sessions, r.Records, sizeName(r.ValueBytes), r.Delivered, r.Seconds, r.RecordsPerS, r.FetchRequests, r.RequestsPerRecord, micros(r.Cost.CPUPerRecord), mib(r.Cost.PeakRSS), cacheFigure(r.Cost))
	}
	p("")
}

// realData renders the JSON-event runs, measured in rounds rounds.
func realData(p func(string, ...any), runs []RealDataRun, rounds int) {
	p("#### Real data: compressed JSON events, N readers of one partition")
	p("")
	p("Every partition holds the same JSON events, produced by a franz-go producer with its default batching (10 ms linger, 1 MB batches) and the codec. For each reader count N, in each round, a partition of its own: N direct franz-go consumers each read the whole partition, then N gateway sessions each do (the APISIX fetch loop: `cmd_kafka_fetch` from offset 0, then at last + 1), the gateway meeting the partition for the first time; then N sessions read it again (\"read again\": what a record cache gives later readers). Records/s count the deliveries to all readers together; records/s and durations are those of the fastest of %d rounds of each read. \"Of direct\" is paired within a round: the gateway's rate over the direct rate of the same round, the two reads run back to back under the same load of the machine; the figure is the median of the %d rounds' ratios, with the smallest and the largest in brackets (the spread within the run). Gateway CPU and Kafka fetch bytes are those of the gateway's fastest first read: CPU is the gateway process's CPU time over its records; fetch bytes per record above the compressed size mean the gateway fetched the same batches more than once.", rounds, rounds)
	p("")
	p("| codec | events | mean value | compressed | readers | direct records/s (fastest) | gateway records/s (fastest) | of direct: median of rounds (min–max) | fastest reads lasted (direct / gateway) | gateway CPU per record | Kafka fetch bytes per record | gateway peak RSS | peak decoded cache | read again: records/s (fastest) | of direct: median of rounds (min–max) |")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, run := range runs {
		compressed := "-"
		if run.CompressedBytes > 0 {
			compressed = fmt.Sprintf("%.0f B (%.1fx)", float64(run.CompressedBytes)/float64(run.Records), float64(run.BatchBytes)/float64(run.CompressedBytes))
		}
		for _, r := range run.Rows {
			again := "- | -"
			if r.WarmPerS > 0 {
				again = fmt.Sprintf("%.0f | %s", r.WarmPerS, percentSpread(r.WarmOfDirect, r.WarmOfDirectMin, r.WarmOfDirectMax))
			}
			p("| %s | %d | %.0f B | %s | %d | %.0f | %.0f | %s | %.2f s / %.2f s | %s | %.0f B | %s | %s | %s |", run.Codec, run.Records, run.ValueBytes, compressed, r.Readers, r.DirectPerS, r.GatewayPerS, percentSpread(r.OfDirect, r.OfDirectMin, r.OfDirectMax), r.DirectSeconds, r.GatewaySeconds, micros(r.Cost.CPUPerRecord), r.FetchBytesPerRecord, mib(r.Cost.PeakRSS), cacheFigure(r.Cost), again)
		}
	}
	p("")
}

// pushLatencies renders the push latency runs.
func pushLatencies(p func(string, ...any), rows []PushRow) {
	p("#### Push latency: JSON events at a steady rate to subscribers of one partition")
	p("")
	p("Each record carries its send time; every subscriber's every record counts. The producer does not linger (snappy, its default compression). Each round subscribes its sessions anew; p50, p99 and CPU are the median of the rounds' figures, with the smallest and largest round in brackets; p99.9 and max are over all rounds' samples.")
	p("")
	p("| subscribers | rounds x records | rate | samples | p50 ms | p99 ms | p99.9 ms | max ms | gateway CPU per delivered record, us | gateway peak RSS | peak decoded cache |")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		l := r.Latency
		p("| %d | %d x %d | %.0f/s | %d | %s | %s | %.3f | %.3f | %s | %s | %s |", r.Sessions, max(r.Rounds, 1), r.Records, r.Rate, l.Samples,
			r.roundsOr(r.P50, l.P50).format("%.3f"), r.roundsOr(r.P99, l.P99).format("%.3f"), l.P999, l.Max,
			r.roundsOr(r.CPUPerRecord, r.Cost.CPUPerRecord).format("%.2f"), mib(r.Cost.PeakRSS), cacheFigure(r.Cost))
	}
	p("")
}

// roundsOr returns s, or whole as the one figure of a row of results
// written before push runs had rounds.
func (r PushRow) roundsOr(s Spread, whole float64) Spread {
	if r.Rounds == 0 {
		return Spread{Median: whole, Min: whole, Max: whole}
	}
	return s
}

// issue12Targets renders the targets of issue 12 against the figures.
func issue12Targets(p func(string, ...any), res Results) {
	p("#### Targets of issue 12 (aimed at, never asserted)")
	p("")
	p("| target | figure |")
	p("|---|---|")
	p("| compressed JSON, 1 session >= 70%% of direct | %s |", sharedOfDirect(res.RealData, 1, true))
	p("| compressed JSON, 10 sessions on one partition >= 100%% of 10 direct consumers | %s |", sharedOfDirect(res.RealData, 10, true))
	p("| uncompressed: no regression | JSON, 1 / 10 sessions: %s / %s; random values: see the comparison |", sharedOfDirect(res.RealData, 1, false), sharedOfDirect(res.RealData, 10, false))
	var fanout []string
	for _, r := range res.Subscribe.Fanout {
		if r.Sessions == 100 {
			fanout = append(fanout, micros(r.Cost.CPUPerRecord)+" (100 B values, as fast as the producer goes)")
		}
	}
	for _, r := range res.Push {
		if r.Sessions == 100 {
			fanout = append(fanout, fmt.Sprintf("%s us (JSON at %.0f/s, median of rounds)", r.roundsOr(r.CPUPerRecord, r.Cost.CPUPerRecord).format("%.2f"), r.Rate))
		}
	}
	if fanout == nil {
		fanout = []string{"not measured"}
	}
	p("| fan-out <= 0.5 us gateway CPU per delivered record at 100 subscribers | %s |", strings.Join(fanout, "; "))
	thousand := "not measured"
	for _, r := range res.Subscribe.Fanout {
		if r.Sessions == 1000 {
			thousand = fmt.Sprintf("%.2f M/s", r.RecordsPerS/1e6)
		}
	}
	p("| >= 1 M deliveries/s at 1000 subscribers of one partition | %s |", thousand)
	latency := "not measured"
	for _, r := range res.Push {
		if r.Sessions == 100 {
			latency = fmt.Sprintf("p50 %s ms, p99 %s ms (median of rounds)", r.roundsOr(r.P50, r.Latency.P50).format("%.3f"), r.roundsOr(r.P99, r.Latency.P99).format("%.3f"))
		}
	}
	p("| push at 1000 records/s to 100 subscribers: p99 < 2 ms, p50 < 0.5 ms | %s |", latency)
	var peak gatewayCost
	costs := []gatewayCost{}
	for _, run := range res.RealData {
		for _, r := range run.Rows {
			costs = append(costs, r.Cost)
		}
	}
	for _, r := range res.Subscribe.Fanout {
		costs = append(costs, r.Cost)
	}
	for _, r := range res.Push {
		costs = append(costs, r.Cost)
	}
	for _, c := range costs {
		peak.PeakRSS = max(peak.PeakRSS, c.PeakRSS)
		peak.PeakCacheBytes = max(peak.PeakCacheBytes, c.PeakCacheBytes)
		peak.CacheLimit = max(peak.CacheLimit, c.CacheLimit)
	}
	p("| decoded cache within its configured bytes | peak over the real-data, subscription and push runs: %s; gateway peak RSS %s |", cacheFigure(peak), mib(peak.PeakRSS))
}

// cacheFigure is the peak of the decoded-record cache against its bound,
// or "-" for a gateway without one.
func cacheFigure(c gatewayCost) string {
	if c.CacheLimit == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f of %.0f MiB", float64(c.PeakCacheBytes)/(1<<20), float64(c.CacheLimit)/(1<<20))
}

// sharedOfDirect lists the real-data ratios of readers sessions, of the
// compressed codecs or of the uncompressed one: each the median of the
// rounds with their spread.
func sharedOfDirect(runs []RealDataRun, readers int, compressed bool) string {
	var parts []string
	for _, run := range runs {
		if (run.Codec != "none") != compressed {
			continue
		}
		for _, r := range run.Rows {
			if r.Readers == readers {
				parts = append(parts, fmt.Sprintf("%s %s", run.Codec, percentSpread(r.OfDirect, r.OfDirectMin, r.OfDirectMax)))
			}
		}
	}
	if parts == nil {
		return "not measured"
	}
	return strings.Join(parts, ", ")
}

// percentSpread renders a ratio measured per round as a percentage, its
// median, followed by the smallest and largest round in brackets when they
// differ ("70% (66–73%)"). Results written before the spread was kept have
// no extremes and show the median alone.
func percentSpread(median, lo, hi float64) string {
	if lo == hi {
		return fmt.Sprintf("%.0f%%", 100*median)
	}
	return fmt.Sprintf("%.0f%% (%.0f–%.0f%%)", 100*median, 100*lo, 100*hi)
}

func micros(us float64) string {
	if us == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f us", us)
}

func mib(b uint64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}

func ofDirect(rows []ThroughputRow, sessions int) string {
	var parts []string
	for _, r := range rows {
		if r.Reader == "gateway" && r.Sessions == sessions {
			parts = append(parts, fmt.Sprintf("%.0f%% (%s)", 100*r.OfDirect, sizeName(r.ValueBytes)))
		}
	}
	if parts == nil {
		return "not measured"
	}
	return strings.Join(parts, ", ")
}

func clientName(kind string) string {
	if kind == ClientGo {
		return "the project's client package"
	}
	return "a lean frame-level client"
}

func readerName(r string) string {
	if r == "direct" {
		return "direct franz-go"
	}
	return r
}

func sizeName(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// slopeFrom and slopeTo are the idle steps between which the cost of one
// more session is read (Slope).
const slopeFrom, slopeTo = 1000, 4000

func kib(n float64) string { return fmt.Sprintf("%.1f KiB", n/1024) }

// Write stores res in dir: JSON, Markdown (with the comparison with
// baseline, if any), the throughput chart and the machine description.
func Write(dir string, res Results, baseline *Results) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	png, err := throughputChart(res)
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	for name, content := range map[string][]byte{
		ResultsJSON:     append(js, '\n'),
		ResultsMarkdown: []byte(Markdown(res, baseline)),
		ThroughputChart: png,
		MachineText:     []byte(res.Machine.String() + "\n"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// UpdateDoc replaces the text between the result markers of the Markdown
// file at path with res's tables.
func UpdateDoc(path string, res Results, baseline *Results) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	begin := bytes.Index(doc, []byte(docBegin))
	end := bytes.Index(doc, []byte(docEnd))
	if begin < 0 || end < begin {
		return fmt.Errorf("%s: no %q ... %q section", path, docBegin, docEnd)
	}
	var out bytes.Buffer
	out.Write(doc[:begin+len(docBegin)])
	out.WriteString("\n" + Markdown(res, baseline))
	out.Write(doc[end:])
	return os.WriteFile(path, out.Bytes(), 0o644)
}
