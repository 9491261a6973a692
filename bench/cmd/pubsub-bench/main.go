// Command pubsub-bench measures the gateway against direct franz-go on
// loopback in one run: throughput with 1, 10 and 100 sessions, latency,
// idle-session memory, handshake rate, fan-out cost, streaming
// subscriptions (latency, and delivery to 1, 100 and 1000 sessions), real
// data (compressed JSON events read by 1, 10 and 100 sessions of one
// partition against as many direct consumers) and push latency at a steady
// rate to 1, 100 and 1000 subscribers. It writes JSON,
// Markdown and a PNG chart to -out and the tables into BENCHMARKS.md.
//
// The broker (kfake) and the gateway run as child processes started from
// this binary; see package bench.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/envoy-pubsub/gateway/bench"
)

func main() {
	if isChild, err := bench.RunChild(os.Args[1:]); isChild {
		if err != nil {
			fmt.Fprintf(os.Stderr, "pubsub-bench %s: %v\n", os.Getenv(bench.RoleEnv), err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pubsub-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	quick := flag.Bool("quick", false, "small sizes that finish in under a minute; results go to a temporary directory and BENCHMARKS.md is left alone")
	sizes := flag.String("sizes", "100,1024", "record value sizes of the throughput runs, bytes")
	mb := flag.Float64("mb", 100, "megabytes of values read per size and reader")
	runs := flag.Int("runs", 3, "rounds of throughput and real-data runs, each running every reader once; each reader keeps its fastest, and a real-data ratio to direct is the median of the rounds' ratios (paired within a round)")
	sessions := flag.String("sessions", "1,10,100", "concurrent session counts read through the gateway")
	idle := flag.String("idle", "1000,2000,4000,10000", "idle session counts whose gateway memory is measured")
	latency := flag.Int("latency-samples", 5000, "round trips per latency figure")
	fanoutSessions := flag.Int("fanout-sessions", 100, "sessions tailing one partition in the fan-out run")
	fanoutRecords := flag.Int("fanout-records", 5000, "records produced in the fan-out run")
	subscribeSessions := flag.String("subscribe-sessions", "1,100,1000", "session counts subscribed to one partition in the subscription runs; empty skips them (code without subscriptions)")
	subscribeRecords := flag.Int("subscribe-records", 20000, "records produced in each subscription run")
	codecs := flag.String("codecs", "none,snappy,zstd", "batch compressions of the real-data runs ("+strings.Join(bench.CodecNames(), ", ")+"); empty skips them")
	eventMB := flag.Float64("event-mb", 100, "megabytes of JSON events in each codec's partition")
	eventBytes := flag.Int("event-bytes", bench.SmallEventBytes, fmt.Sprintf("kind of JSON events by size: %d (compact events) or %d (events with nested objects and text)", bench.SmallEventBytes, bench.LargeEventBytes))
	sharedSessions := flag.String("shared-sessions", "1,10", "reader counts of the real-data runs: as many direct consumers and as many sessions each read the whole partition")
	pushSessions := flag.String("push-sessions", "1,100,1000", "subscriber counts of the push latency runs; empty skips them")
	pushRecords := flag.Int("push-records", 3000, "records produced in each push latency run")
	pushRate := flag.Float64("push-rate", 1000, "records per second produced in the push latency runs")
	cacheBytes := flag.Int("cache-bytes", 0, "the gateway cluster's cache_bytes (its decoded-record cache); 0 keeps the gateway's default")
	windowBytes := flag.Int("window-bytes", 0, "the gateway cluster's window_bytes (the cache's share for one partition); 0 keeps the gateway's default")
	clientKind := flag.String("client", bench.ClientProto, "client of the sessions: proto (replies decoded by the generated protobuf code, as applications do), raw (a lean frame-level client) or go (the project's client package)")
	out := flag.String("out", "results", "directory of the result files (the default is relative to the bench module, where the command runs)")
	doc := flag.String("doc", filepath.Join("..", "BENCHMARKS.md"), "Markdown file whose results section is replaced; empty leaves it")
	compare := flag.String("compare", "", "results.json of an earlier run to compare with (before/after table)")
	merge := flag.String("merge", "", "comma-separated results.json files of runs of the same code: measure nothing, write the best figure of each (see bench.Best)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the gateway process to this file")
	memProfile := flag.String("memprofile", "", "write an allocation profile of the gateway process to this file")
	clientProfile := flag.String("client-cpuprofile", "", "write a CPU profile of the benchmark (client) process to this file")
	flag.Parse()

	cfg := bench.Config{
		MBPerSize:        *mb,
		Runs:             *runs,
		Client:           *clientKind,
		LatencySamples:   *latency,
		FanoutSessions:   *fanoutSessions,
		FanoutRecords:    *fanoutRecords,
		SubscribeRecords: *subscribeRecords,
		EventMB:          *eventMB,
		EventBytes:       *eventBytes,
		CacheBytes:       *cacheBytes,
		WindowBytes:      *windowBytes,
		PushRecords:      *pushRecords,
		PushRate:         *pushRate,
		CPUProfile:       absolute(*cpuProfile),
		MemProfile:       absolute(*memProfile),
	}
	if cfg.Client != bench.ClientProto && cfg.Client != bench.ClientRaw && cfg.Client != bench.ClientGo {
		return fmt.Errorf("-client: %q is none of %s, %s, %s", cfg.Client, bench.ClientProto, bench.ClientRaw, bench.ClientGo)
	}
	var err error
	if cfg.ValueSizes, err = ints("sizes", *sizes); err != nil {
		return err
	}
	if cfg.Sessions, err = ints("sessions", *sessions); err != nil {
		return err
	}
	if cfg.IdleSessions, err = ints("idle", *idle); err != nil {
		return err
	}
	if *subscribeSessions != "" {
		if cfg.SubscribeSessions, err = ints("subscribe-sessions", *subscribeSessions); err != nil {
			return err
		}
	}
	if *codecs != "" {
		if cfg.Codecs, err = bench.ParseCodecs(*codecs); err != nil {
			return fmt.Errorf("-codecs: %w", err)
		}
	}
	if cfg.SharedSessions, err = ints("shared-sessions", *sharedSessions); err != nil {
		return err
	}
	if *pushSessions != "" {
		if cfg.PushSessions, err = ints("push-sessions", *pushSessions); err != nil {
			return err
		}
	}
	if cfg.EventBytes != bench.SmallEventBytes && cfg.EventBytes != bench.LargeEventBytes {
		return fmt.Errorf("-event-bytes: %d is neither %d nor %d", cfg.EventBytes, bench.SmallEventBytes, bench.LargeEventBytes)
	}
	if cfg.PushRate <= 0 || cfg.PushRecords <= 0 || cfg.EventMB <= 0 {
		return fmt.Errorf("-push-rate, -push-records and -event-mb must be positive")
	}
	if *quick {
		cfg.MBPerSize = 20
		cfg.Runs = 1
		cfg.IdleSessions = []int{500, 1000}
		cfg.LatencySamples = 1000
		cfg.FanoutRecords = 1000
		cfg.SubscribeSessions = []int{1, 100}
		cfg.SubscribeRecords = 2000
		cfg.EventMB = 2
		cfg.SharedSessions = []int{1, 10}
		cfg.PushSessions = []int{1, 100}
		cfg.PushRecords = 500
		*out = filepath.Join(os.TempDir(), "pubsub-bench-quick")
		*doc = ""
	}
	var baseline *bench.Results
	if *compare != "" {
		if baseline, err = bench.ReadResults(*compare); err != nil {
			return err
		}
	}
	if *clientProfile != "" {
		stop, err := bench.StartCPUProfile(*clientProfile)
		if err != nil {
			return err
		}
		defer stop()
	}

	var res bench.Results
	if *merge != "" {
		res, err = mergeFiles(strings.Split(*merge, ","))
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		defer cancel()
		res, err = bench.Run(ctx, cfg, os.Stderr)
	}
	if err != nil {
		return err
	}
	if err := bench.Write(*out, res, baseline); err != nil {
		return err
	}
	fmt.Print(bench.Markdown(res, baseline))
	fmt.Fprintf(os.Stderr, "results in %s\n", *out)
	if *doc != "" {
		return bench.UpdateDoc(*doc, res, baseline)
	}
	return nil
}

// mergeFiles combines the results stored in paths with bench.Best.
func mergeFiles(paths []string) (bench.Results, error) {
	var runs []bench.Results
	for _, p := range paths {
		r, err := bench.ReadResults(p)
		if err != nil {
			return bench.Results{}, err
		}
		runs = append(runs, *r)
	}
	return bench.Best(runs...)
}

// ints parses a comma-separated list of positive integers.
func ints(name, list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("-%s: %q is not a positive integer", name, f)
		}
		out = append(out, n)
	}
	return out, nil
}

// absolute makes a profile path independent of the child's directory.
func absolute(path string) string {
	if path == "" {
		return ""
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return path
	}
	return abs
}
