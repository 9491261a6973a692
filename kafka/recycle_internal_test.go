package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/config"
)

// TestOnlyRecycledFetchesGiveRecordsBack pins what keeps a shared reader's
// records safe: recycling records of an unmarked fetch leaves them intact,
// while records of a recycled fetch are handed back to the pool.
func TestOnlyRecycledFetchesGiveRecordsBack(t *testing.T) {
	k, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	producer, err := kgo.NewClient(kgo.SeedBrokers(k.ListenAddrs()...), kgo.DefaultProduceTopic("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if err := producer.ProduceSync(ctx, &kgo.Record{Value: []byte("v0")}, &kgo.Record{Value: []byte("v1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	doc, err := config.Parse([]byte("kafka_clusters:\n  kafka:\n    brokers: [" + k.ListenAddrs()[0] + "]\n"))
	if err != nil {
		t.Fatal(err)
	}
	pool := NewPool()
	defer pool.Close()
	cl, err := pool.Acquire(doc.KafkaClusters["kafka"])
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Release()

	kept, err := cl.Fetch(ctx, "t", 0, 0)
	if err != nil || len(kept) != 2 {
		t.Fatalf("fetch: %d records, %v", len(kept), err)
	}
	recycleRecords(kept)
	if string(kept[0].Value) != "v0" || string(kept[1].Value) != "v1" || kept[1].Offset != 1 {
		t.Fatalf("records of an unmarked fetch were recycled: %+v", kept)
	}

	pooled, err := cl.Fetch(recycled(ctx), "t", 0, 0)
	if err != nil || len(pooled) != 2 || string(pooled[1].Value) != "v1" {
		t.Fatalf("recycled fetch: %d records, %v", len(pooled), err)
	}
	value := pooled[1].Value
	recycleRecords(pooled)
	if pooled[0].Value != nil || pooled[1].Offset != 0 {
		t.Fatalf("records of a recycled fetch were not given back: %+v", pooled)
	}
	if string(value) != "v1" {
		t.Fatalf("a value taken before recycling changed to %q", value)
	}
}
