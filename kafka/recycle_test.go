package kafka_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/envoy-pubsub/gateway/internal/testkit"
)

// TestConcurrentFetchesReadIntactRecords runs sessions that fetch their own
// partition over and over from changing offsets, so that pooled record
// slices are recycled and reused between them all the time; every record
// must still arrive with its own offset and value.
func TestConcurrentFetchesReadIntactRecords(t *testing.T) {
	f := newFixture(t, "")
	const perPartition = 200
	for p := range int32(3) {
		recs := make([]testkit.Record, perPartition)
		for i := range recs {
			recs[i].Value = fmt.Sprintf("p%d-%d", p, i)
		}
		testkit.Produce(t, f.kafka.ListenAddrs(), "t", p, recs)
	}
	c := ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for p := range int32(3) {
		session := f.srv.Dial(t, "kafka")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 30 {
				from := int64(round * 7 % perPartition)
				msgs, err := session.Fetch(c, "t", p, from)
				if err != nil {
					errs <- err
					return
				}
				for i, m := range msgs {
					want := fmt.Sprintf("p%d-%d", p, from+int64(i))
					if m.GetOffset() != from+int64(i) || string(m.GetValue()) != want {
						errs <- fmt.Errorf("partition %d from %d: record %d is offset %d %q, want %q", p, from, i, m.GetOffset(), m.GetValue(), want)
						return
					}
				}
				if len(msgs) != perPartition-int(from) {
					errs <- fmt.Errorf("partition %d from %d: %d records", p, from, len(msgs))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
