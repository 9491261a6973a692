package kafka_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// transaction writes values to partition 0 of "t" in one transaction of tx
// and commits or aborts it.
func transaction(t *testing.T, tx *kgo.Client, commit kgo.TransactionEndTry, values ...string) {
	t.Helper()
	c := ctx(t)
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, v := range values {
		if err := tx.ProduceSync(c, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.EndTransaction(c, commit); err != nil {
		t.Fatal(err)
	}
}

// transactionalProducer returns a transactional producer to partition 0
// of "t".
func transactionalProducer(t *testing.T, k *kfake.Cluster) *kgo.Client {
	t.Helper()
	tx, err := kgo.NewClient(kgo.SeedBrokers(k.ListenAddrs()...), kgo.TransactionalID("tx"),
		kgo.DefaultProduceTopic("t"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tx.Close)
	return tx
}

// transactionalLog writes to partition 0 of "t": a committed transaction
// (offsets 0-2, commit marker 3), an aborted one (4-5, abort marker 6), a
// plain record (7), and a last committed transaction (8, commit marker 9).
// The data records are 0, 1, 2, 7 and 8; the log ends at 10.
func transactionalLog(t *testing.T, k *kfake.Cluster, tx *kgo.Client) {
	t.Helper()
	transaction(t, tx, kgo.TryCommit, "c0", "c1", "c2")
	transaction(t, tx, kgo.TryAbort, "a4", "a5")
	testkit.Produce(t, k.ListenAddrs(), "t", 0, []testkit.Record{{Value: "p7"}})
	transaction(t, tx, kgo.TryCommit, "c8")
}

// fetchResp sends cmd_kafka_fetch and returns the offsets and next_offset of
// its reply.
func fetchResp(t *testing.T, c *client.Client, offset int64) ([]int64, int64) {
	t.Helper()
	resp, err := c.Do(ctx(t), &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaFetch{
		CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: "t", Partition: 0, Offset: offset},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if e := resp.GetErrorResp(); e != nil {
		t.Fatalf("fetch at %d: %s", offset, e.GetMessage())
	}
	var offsets []int64
	for _, m := range resp.GetKafkaFetchResp().GetMessages() {
		offsets = append(offsets, m.GetOffset())
	}
	return offsets, resp.GetKafkaFetchResp().GetNextOffset()
}

func TestNextOffsetPassesControlRecordsAndAbortedTransactions(t *testing.T) {
	f := newFixture(t, "")
	tx := transactionalProducer(t, f.kafka)
	transactionalLog(t, f.kafka, tx)
	for _, tc := range []struct {
		offset int64
		want   []int64
		next   int64
	}{
		{0, []int64{0, 1, 2, 7, 8}, 10},
		{2, []int64{2, 7, 8}, 10},
		{3, []int64{7, 8}, 10}, // a commit marker
		{5, []int64{7, 8}, 10}, // inside the aborted transaction
		{6, []int64{7, 8}, 10}, // the abort marker
		{8, []int64{8}, 10},
		{9, nil, 10}, // only the last commit marker is left
		{10, nil, 10},
	} {
		// A fresh session each time, and the same offsets read twice: the
		// second read comes from the record cache.
		for round := range 2 {
			got, next := fetchResp(t, f.srv.Dial(t, "kafka"), tc.offset)
			if !slices.Equal(got, tc.want) || next != tc.next {
				t.Errorf("round %d, fetch at %d: offsets %v next_offset %d; want %v next_offset %d", round, tc.offset, got, next, tc.want, tc.next)
			}
		}
	}

	// A subscriber from the start gets the data records in order, and the
	// last push says where to go on.
	sub, err := f.c.Subscribe(ctx(t), &pb.CmdKafkaSubscribe{Topic: "t", Partitions: []int32{0},
		Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	var next int64
	receive := func(last int64) {
		t.Helper()
		for !slices.Contains(got, last) {
			select {
			case resp := <-sub.C():
				fr := resp.GetKafkaFetchResp()
				if fr == nil {
					t.Fatalf("push: %v", resp)
				}
				for _, m := range fr.GetMessages() {
					got = append(got, m.GetOffset())
					if want := fmt.Sprintf("%c%d", "ccc____pc_c_p"[m.GetOffset()], m.GetOffset()); string(m.GetValue()) != want {
						t.Errorf("offset %d: value %q, want %q", m.GetOffset(), m.GetValue(), want)
					}
				}
				next = fr.GetNextOffset()
			case <-ctx(t).Done():
				t.Fatalf("subscription delivered %v only", got)
			}
		}
	}
	receive(8)
	if !slices.Equal(got, []int64{0, 1, 2, 7, 8}) || next != 10 {
		t.Fatalf("subscription delivered %v, last next_offset %d; want [0 1 2 7 8] and 10", got, next)
	}

	// At the end of the log the shared reader's consumer delivers: a new
	// transaction (10, commit marker 11) and a plain record (12).
	transaction(t, tx, kgo.TryCommit, "c10")
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, []testkit.Record{{Value: "p12"}})
	receive(12)
	if !slices.Equal(got, []int64{0, 1, 2, 7, 8, 10, 12}) || next != 13 {
		t.Fatalf("subscription delivered %v, last next_offset %d; want [0 1 2 7 8 10 12] and 13", got, next)
	}
	if got, next := fetchResp(t, f.srv.Dial(t, "kafka"), 9); !slices.Equal(got, []int64{10, 12}) || next != 13 {
		t.Fatalf("fetch at 9: offsets %v next_offset %d; want [10 12] and 13", got, next)
	}
}
