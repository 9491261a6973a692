package standalone

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/config"
)

// DemoTopic is the topic the embedded Kafka seeds and feeds.
const DemoTopic = "demo"

// DevKafka is an embedded, in-memory Kafka (franz-go's kfake) with a demo
// topic that receives a record every second. It is for development only:
// nothing is persisted and nothing is secured.
type DevKafka struct {
	cluster *kfake.Cluster
	cancel  context.CancelFunc
	done    chan struct{}
}

// StartDevKafka starts the embedded Kafka on a loopback port and its demo
// producer.
func StartDevKafka(log *slog.Logger) (*DevKafka, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, DemoTopic))
	if err != nil {
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(DemoTopic))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("embedded kafka: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &DevKafka{cluster: c, cancel: cancel, done: make(chan struct{})}
	go d.produce(ctx, cl, log)
	return d, nil
}

// Brokers returns the embedded broker addresses.
func (d *DevKafka) Brokers() []string { return d.cluster.ListenAddrs() }

// Close stops the producer and the broker.
func (d *DevKafka) Close() {
	d.cancel()
	<-d.done
	d.cluster.Close()
}

// produce writes "demo record N" to the demo topic every second.
func (d *DevKafka) produce(ctx context.Context, cl *kgo.Client, log *slog.Logger) {
	defer close(d.done)
	defer cl.Close()
	defer func() {
		if p := recover(); p != nil {
			log.Error("embedded kafka: demo producer panic", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		rec := &kgo.Record{Key: []byte(strconv.Itoa(n)), Value: []byte("demo record " + strconv.Itoa(n))}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil && ctx.Err() == nil {
			log.Warn("embedded kafka: demo produce failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// DevConfig returns the configuration that serves d as cluster "kafka",
// where clients may also write to the demo topic and use the consumer groups
// "demo-*".
func DevConfig(d *DevKafka) (*config.Document, error) {
	brokers, err := json.Marshal(d.Brokers())
	if err != nil {
		return nil, err
	}
	return config.Parse([]byte(`{"kafka_clusters": {"kafka": {"brokers": ` + string(brokers) +
		`, "produce_topics": ["` + DemoTopic + `"], "groups": ["demo-*"]}}}`))
}
