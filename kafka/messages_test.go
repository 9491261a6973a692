package kafka_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// TestConcurrentFetchesReadIntactRecords runs sessions that fetch their own
// partition over and over from changing offsets, so that pooled message
// slabs are reused between them all the time and records come from both the
// broker and the record cache; every
// record must still arrive with its own offset, value and headers (every
// third record has two, the others none).
func TestConcurrentFetchesReadIntactRecords(t *testing.T) {
	f := newFixture(t, "")
	const perPartition = 200
	for p := range int32(3) {
		recs := make([]testkit.Record, perPartition)
		for i := range recs {
			recs[i].Value = fmt.Sprintf("p%d-%d", p, i)
			if i%3 == 0 {
				recs[i].Headers = []kgo.RecordHeader{{Key: "i", Value: []byte(recs[i].Value)}, {Key: "j"}}
			}
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
					offset := from + int64(i)
					want := fmt.Sprintf("p%d-%d", p, offset)
					if m.GetOffset() != offset || string(m.GetValue()) != want {
						errs <- fmt.Errorf("partition %d from %d: record %d is offset %d %q, want %q", p, from, i, m.GetOffset(), m.GetValue(), want)
						return
					}
					if err := checkHeaders(m.GetHeaders(), offset, want); err != nil {
						errs <- fmt.Errorf("partition %d, offset %d: %w", p, offset, err)
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

// checkHeaders checks the headers of the record at offset with value.
func checkHeaders(hs []*pb.KafkaHeader, offset int64, value string) error {
	if offset%3 != 0 {
		if len(hs) != 0 {
			return fmt.Errorf("%d headers, want none", len(hs))
		}
		return nil
	}
	if len(hs) != 2 || hs[0].GetKey() != "i" || string(hs[0].GetValue()) != value || hs[1].GetKey() != "j" || len(hs[1].GetValue()) != 0 {
		return fmt.Errorf("headers %v, want i=%s and j", hs, value)
	}
	return nil
}

// TestFetchOfAHeaderKeyNotUTF8AnswersAnError: a record whose header key is
// not valid UTF-8 cannot be carried by a KafkaHeader (a protocol string);
// the fetch that would return it gets an error_resp at once, naming the
// record, and the records after it are fetched as usual.
func TestFetchOfAHeaderKeyNotUTF8AnswersAnError(t *testing.T) {
	f := newFixture(t, "")
	testkit.Produce(t, f.kafka.ListenAddrs(), "t", 0, []testkit.Record{
		{Value: "bad", Headers: []kgo.RecordHeader{{Key: "\xff", Value: []byte("v")}}},
		{Value: "good", Headers: []kgo.RecordHeader{{Key: "ü", Value: []byte("v")}}},
	})
	c, cancel := context.WithTimeout(ctx(t), 10*time.Second)
	defer cancel()
	_, err := f.c.Fetch(c, "t", 0, 0)
	if msg := serverError(t, err); !strings.Contains(msg, "offset 0") || !strings.Contains(msg, "not valid UTF-8") {
		t.Fatalf("error_resp %q, want the record's offset and why", msg)
	}
	msgs, err := f.c.Fetch(ctx(t), "t", 0, 1)
	if err != nil || len(msgs) != 1 || string(msgs[0].GetValue()) != "good" || msgs[0].GetHeaders()[0].GetKey() != "ü" {
		t.Fatalf("fetch after the record: %v, %v", msgs, err)
	}
}
