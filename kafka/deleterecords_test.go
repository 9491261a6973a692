package kafka_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// TestDeleteRecordsUnderASlowSubscription: a subscriber that does not read
// stops at some offset with the rest of the partition in the record cache.
// Records deleted meanwhile (DeleteRecords) are checked at read time: the
// subscription is told OFFSET_OUT_OF_RANGE instead of being served records
// Kafka no longer holds from the cache.
func TestDeleteRecordsUnderASlowSubscription(t *testing.T) {
	const (
		records   = 300
		size      = 128 << 10
		deletedTo = 280
	)
	k := testkit.Kafka(t, kfake.SeedTopics(1, "t"))
	// The cache holds the whole partition: only a check can find the
	// records gone.
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "    window_bytes: 67108864\n    cache_bytes: 134217728\n", ""), nil)
	recs := make([]testkit.Record, records)
	for i := range recs {
		recs[i] = testkit.Record{Value: strings.Repeat("x", size)}
	}
	testkit.Produce(t, k.ListenAddrs(), "t", 0, recs, kgo.ProducerBatchCompression(kgo.NoCompression()))

	// Another session reads the partition: its records are cached.
	reader := srv.Dial(t, "kafka")
	for offset := int64(0); offset < records; {
		msgs, err := reader.Fetch(ctx(t), "t", 0, offset)
		if err != nil || len(msgs) == 0 {
			t.Fatalf("fetch at %d: %d records, %v", offset, len(msgs), err)
		}
		offset = msgs[len(msgs)-1].GetOffset() + 1
	}

	c := srv.Dial(t, "kafka")
	sub, err := c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0}, MaxRecords: 1,
		Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	// The client stops reading: its queue fills, then the socket, then
	// the session's push queue, long before the records to be deleted.
	deadline := time.Now().Add(15 * time.Second)
	for len(sub.C()) < cap(sub.C()) {
		if time.Now().After(deadline) {
			t.Fatalf("the subscriber's queue holds %d pushes, want it full", len(sub.C()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Older than one check interval, the cached records need a check.
	time.Sleep(3 * 100 * time.Millisecond)
	if err := k.DeleteRecords("t", 0, deletedTo); err != nil {
		t.Fatal(err)
	}

	last := int64(-1)
	timeout := time.After(20 * time.Second)
	for {
		select {
		case resp, ok := <-sub.C():
			if !ok {
				t.Fatalf("the subscription ended without an error after offset %d", last)
			}
			if e := resp.GetErrorResp(); e != nil {
				if !strings.HasSuffix(e.GetMessage(), "err: OFFSET_OUT_OF_RANGE") {
					t.Fatalf("error %q, want OFFSET_OUT_OF_RANGE", e.GetMessage())
				}
				if last >= deletedTo-1 {
					t.Fatalf("the subscriber got every deleted record (up to %d) before the error", last)
				}
				return
			}
			for _, m := range resp.GetKafkaFetchResp().GetMessages() {
				last = m.GetOffset()
			}
		case <-timeout:
			t.Fatalf("no error after offset %d: the deleted records were served", last)
		}
	}
}
