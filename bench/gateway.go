package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/standalone"
)

// gatewayReady is what the gateway child reports when it listens.
type gatewayReady struct {
	Addr string `json:"addr"`
}

// GatewayStats is the gateway child's memory and Kafka traffic.
type GatewayStats struct {
	ProcessStats
	// Sessions is the number of open sessions.
	Sessions int `json:"sessions"`
	// FetchRequests and FetchBytes count the Fetch requests the gateway's
	// Kafka client sent and the response bytes it read since the last
	// reset.
	FetchRequests int64 `json:"fetch_requests"`
	FetchBytes    int64 `json:"fetch_bytes"`
	// CacheBytes is what the cluster's decoded-record cache holds now, and
	// PeakCacheBytes the most it held at any of its samples (every
	// cacheSampleInterval) since the last reset; CacheLimit is its
	// configured bound (kafka_clusters.NAME.cache_bytes).
	CacheBytes     int64 `json:"cache_bytes"`
	PeakCacheBytes int64 `json:"peak_cache_bytes"`
	CacheLimit     int64 `json:"cache_limit"`
}

// gatewayProcess is the gateway child seen from the benchmark.
type gatewayProcess struct {
	*child
	target gatewayTarget
}

// benchCluster is the name of the one Kafka cluster the gateway serves.
const benchCluster = "kafka"

// startGateway serves brokers as cluster benchCluster in a child process,
// with the cluster's record cache bounds of cfg (0: the gateway's defaults);
// cfg's profile files, when set, receive its CPU and heap profiles.
func startGateway(brokers []string, cfg Config) (*gatewayProcess, error) {
	var ready gatewayReady
	c, err := startChild(RoleGateway, &ready,
		"-brokers", strings.Join(brokers, ","), "-cpuprofile", cfg.CPUProfile, "-memprofile", cfg.MemProfile,
		"-cache-bytes", strconv.Itoa(cfg.CacheBytes), "-window-bytes", strconv.Itoa(cfg.WindowBytes))
	if err != nil {
		return nil, err
	}
	return &gatewayProcess{child: c, target: gatewayTarget{url: "ws://" + ready.Addr + "/" + benchCluster, client: cfg.Client}}, nil
}

func (g *gatewayProcess) stats() (GatewayStats, error) {
	var s GatewayStats
	err := g.call("stats", &s)
	return s, err
}

// resetCounters zeroes the Kafka traffic counters and starts a new peak
// resident memory period; it returns the gateway's CPU time at that point,
// from which a later stats call's CPU gives the time spent in between.
func (g *gatewayProcess) resetCounters() (cpu time.Duration, err error) {
	err = g.call("reset", &cpu)
	return cpu, err
}

// gatewayCost is what the gateway spent on one measured run.
type gatewayCost struct {
	// CPUPerRecord is the gateway's CPU time over the run divided by the
	// records delivered to all sessions together, microseconds.
	CPUPerRecord float64 `json:"cpu_us_per_record"`
	// PeakRSS is the gateway's highest resident memory during the run.
	PeakRSS uint64 `json:"peak_rss"`
	// PeakCacheBytes is the most the decoded-record cache held during the
	// run, sampled every cacheSampleInterval; CacheLimit its bound.
	PeakCacheBytes int64 `json:"peak_cache_bytes"`
	CacheLimit     int64 `json:"cache_limit"`
}

// costFrom is the cost of delivered records from the gateway's CPU time
// at the start of a run and its stats at the end.
func costFrom(start time.Duration, end GatewayStats, delivered int64) gatewayCost {
	return gatewayCost{
		CPUPerRecord:   cpuPerRecord(end.CPU-start, delivered),
		PeakRSS:        end.PeakRSS,
		PeakCacheBytes: end.PeakCacheBytes,
		CacheLimit:     end.CacheLimit,
	}
}

// cpuPerRecord is cpu divided by records, in microseconds.
func cpuPerRecord(cpu time.Duration, records int64) float64 {
	return float64(cpu) / float64(time.Microsecond) / float64(max(records, 1))
}

// measureCost runs f, which returns the records it delivered through the
// gateway, and returns what the gateway spent on it and the bytes of the
// Kafka fetch responses it read meanwhile.
func (g *gatewayProcess) measureCost(f func() (delivered int64, err error)) (cost gatewayCost, fetchBytes int64, err error) {
	start, err := g.resetCounters()
	if err != nil {
		return cost, 0, err
	}
	delivered, err := f()
	if err != nil {
		return cost, 0, err
	}
	s, err := g.stats()
	if err != nil {
		return cost, 0, err
	}
	return costFrom(start, s, delivered), s.FetchBytes, nil
}

// fetchCounter is a franz-go hook counting Fetch requests and the bytes of
// their responses.
type fetchCounter struct {
	requests atomic.Int64
	bytes    atomic.Int64
}

// OnBrokerRead implements kgo.HookBrokerRead.
func (f *fetchCounter) OnBrokerRead(_ kgo.BrokerMetadata, key int16, bytesRead int, _, _ time.Duration, err error) {
	if key == int16(kmsg.Fetch) && err == nil {
		f.requests.Add(1)
		f.bytes.Add(int64(bytesRead))
	}
}

// runGateway is the gateway child: the standalone server on a loopback port,
// with limits raised for 10k idle sessions.
func runGateway(args []string) (err error) {
	fs := flag.NewFlagSet(RoleGateway, flag.ContinueOnError)
	brokers := fs.String("brokers", "", "comma-separated Kafka brokers")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the gateway to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile of the gateway to this file at exit")
	cacheBytes := fs.Int("cache-bytes", 0, "kafka_clusters.NAME.cache_bytes; 0 leaves the default")
	windowBytes := fs.Int("window-bytes", 0, "kafka_clusters.NAME.window_bytes; 0 leaves the default")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if _, err := raiseOpenFiles(maxOpenFiles); err != nil {
		return err
	}
	if *cpuProfile != "" {
		stop, err := StartCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if *memProfile != "" {
		defer func() { err = errors.Join(err, writeHeapProfile(*memProfile)) }()
	}

	clusterYAML := fmt.Sprintf("    brokers: [%s]\n", *brokers)
	if *cacheBytes > 0 {
		clusterYAML += fmt.Sprintf("    cache_bytes: %d\n", *cacheBytes)
	}
	if *windowBytes > 0 {
		clusterYAML += fmt.Sprintf("    window_bytes: %d\n", *windowBytes)
	}
	doc, err := config.Parse([]byte(fmt.Sprintf(
		"kafka_clusters:\n  %s:\n%ssession: {idle_timeout: 1h, max_sessions: %d}\n",
		benchCluster, clusterYAML, maxOpenFiles)))
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	counter := &fetchCounter{}
	srv, err := standalone.Start(doc, "127.0.0.1:0", standalone.Options{
		Logger:      log,
		PoolOptions: []kafka.PoolOption{kafka.ClientOptions(kgo.WithHooks(counter))},
	})
	if err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	clusterConfig, err := doc.KafkaClusters[benchCluster].WithPassword(nil)
	if err != nil {
		return err
	}
	// The sessions acquire this same shared cluster (one per configuration);
	// holding it here lets the cache be watched between sessions too.
	cluster, err := srv.Pool().Acquire(clusterConfig)
	if err != nil {
		return err
	}
	defer cluster.Release()
	cache := newCacheWatch(cluster.CachedBytes, log)
	defer cache.stop()
	return serveCommands(gatewayReady{Addr: srv.Addr()}, func(command string) (any, error) {
		if name, ok := strings.CutPrefix(command, heapCommand); ok {
			if *memProfile == "" {
				return nil, nil
			}
			return nil, writeInuseProfile(*memProfile + "." + name)
		}
		switch command {
		case "stats":
			return GatewayStats{
				ProcessStats:   readProcessStats(),
				Sessions:       srv.Sessions().ActiveSessions(),
				FetchRequests:  counter.requests.Load(),
				FetchBytes:     counter.bytes.Load(),
				CacheBytes:     int64(cluster.CachedBytes()),
				PeakCacheBytes: cache.peak(),
				CacheLimit:     int64(clusterConfig.CacheBytes),
			}, nil
		case "reset":
			counter.requests.Store(0)
			counter.bytes.Store(0)
			cache.reset()
			if err := resetPeakRSS(); err != nil {
				return nil, err
			}
			return cpuTime(), nil
		}
		return nil, errUnknownCommand
	})
}

// heapCommand, followed by a name, makes a gateway run with -memprofile
// write its heap in use to the profile's path with the name appended.
const heapCommand = "heap "

// writeInuseProfile writes the heap in use after a collection to path.
func writeInuseProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

// cacheSampleInterval is how often the gateway child samples the bytes of
// its decoded-record cache for the peak it reports.
const cacheSampleInterval = 5 * time.Millisecond

// cacheWatch samples a cache's size and keeps the largest sample since the
// last reset.
type cacheWatch struct {
	bytes    func() int
	max      atomic.Int64
	done     chan struct{}
	finished chan struct{}
}

// newCacheWatch starts sampling bytes every cacheSampleInterval until stop.
func newCacheWatch(bytes func() int, log *slog.Logger) *cacheWatch {
	w := &cacheWatch{bytes: bytes, done: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(w.finished)
		defer func() {
			if p := recover(); p != nil {
				log.Error("bench gateway: cache sampling panic", "panic", p, "stack", string(debug.Stack()))
			}
		}()
		tick := time.NewTicker(cacheSampleInterval)
		defer tick.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-tick.C:
				w.sample()
			}
		}
	}()
	return w
}

// sample raises the peak to the cache's current size.
func (w *cacheWatch) sample() int64 {
	n := int64(w.bytes())
	for {
		old := w.max.Load()
		if n <= old || w.max.CompareAndSwap(old, n) {
			return n
		}
	}
}

// peak returns the largest sample since the last reset, this moment's
// included.
func (w *cacheWatch) peak() int64 {
	w.sample()
	return w.max.Load()
}

// reset starts a new peak period at the cache's current size.
func (w *cacheWatch) reset() { w.max.Store(int64(w.bytes())) }

// stop ends the sampling.
func (w *cacheWatch) stop() {
	close(w.done)
	<-w.finished
}
