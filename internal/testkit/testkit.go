// Package testkit starts the pieces integration tests need: an in-process
// Kafka (kfake), records in it, and a standalone pub-sub server on loopback.
package testkit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/server"
	"github.com/envoy-pubsub/gateway/standalone"
)

// Kafka starts a 3-broker kfake cluster (plus opts) closed with the test.
func Kafka(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Record is a record to produce.
type Record struct {
	Key, Value string
	Timestamp  time.Time
	Headers    []kgo.RecordHeader
}

// Produce writes records to topic/partition with the given client options
// (for SASL or TLS clusters) and returns their offsets.
func Produce(t testing.TB, brokers []string, topic string, partition int32, recs []Record, opts ...kgo.Opt) []int64 {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
	}, opts...)...)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		krs[i] = &kgo.Record{Topic: topic, Partition: partition, Key: []byte(r.Key), Value: []byte(r.Value), Timestamp: r.Timestamp, Headers: r.Headers}
	}
	res := cl.ProduceSync(ctx, krs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	offsets := make([]int64, len(res))
	for i, r := range res {
		offsets[i] = r.Record.Offset
	}
	return offsets
}

// Numbered returns n records with keys "k0".. and values "v0"...
func Numbered(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: fmt.Sprintf("k%d", i), Value: fmt.Sprintf("v%d", i)}
	}
	return recs
}

// SecondApart returns Numbered(n) records timestamped one second apart from
// base, truncated to milliseconds as Kafka stores them.
func SecondApart(n int, base time.Time) []Record {
	recs := Numbered(n)
	base = base.Truncate(time.Millisecond)
	for i := range recs {
		recs[i].Timestamp = base.Add(time.Duration(i) * time.Second)
	}
	return recs
}

// Server is a standalone pub-sub server on a loopback port.
type Server struct {
	// Server runs the sessions (their counts and reply bytes).
	Server *server.Server
	// Pool is the Kafka client pool the sessions share.
	Pool *kafka.Pool
	// Addr is the HOST:PORT the server listens on.
	Addr string

	standalone *standalone.Server
}

// Shutdown stops the server as its test's cleanup does: sessions get 1001,
// then the listener and the Kafka clients close.
func (s *Server) Shutdown(ctx context.Context) error { return s.standalone.Shutdown(ctx) }

// URL returns the WebSocket URL of cluster name.
func (s *Server) URL(name string) string { return "ws://" + s.Addr + "/" + name }

// Dial connects a client to cluster name; it is closed with the test.
func (s *Server) Dial(t testing.TB, name string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, s.URL(name), client.Options{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// StartServer serves the configuration document yamlDoc on a loopback port
// until the test ends. Logs go to log (nil discards them).
func StartServer(t testing.TB, yamlDoc string, log io.Writer, poolOpts ...kafka.PoolOption) *Server {
	t.Helper()
	doc, err := config.Parse([]byte(yamlDoc))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if log == nil {
		log = io.Discard
	}
	logger := slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := standalone.Start(doc, "127.0.0.1:0", standalone.Options{Logger: logger, PoolOptions: poolOpts})
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return &Server{standalone: srv, Server: srv.Sessions(), Pool: srv.Pool(), Addr: srv.Addr()}
}

// ClusterYAML returns a document serving brokers as cluster "kafka", with
// extra YAML lines appended under the cluster (indented by the caller with
// four spaces) and top-level extra appended after.
func ClusterYAML(brokers []string, clusterExtra, topExtra string) string {
	return fmt.Sprintf("kafka_clusters:\n  kafka:\n    brokers: [%s]\n%s%s", strings.Join(brokers, ", "), clusterExtra, topExtra)
}
