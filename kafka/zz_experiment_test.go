package kafka

import (
	"fmt"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestZZTenFetchLoops(t *testing.T) {
	kafka, _ := oneBrokerKafka(t)
	ctx := testContext(t)
	producer, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...), kgo.DefaultProduceTopic("t"), kgo.ProducerBatchCompression(kgo.ZstdCompression()), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const total = 200000
	for i := 0; i < total; i += 1000 {
		batch := make([]*kgo.Record, 1000)
		for j := range batch {
			batch[j] = &kgo.Record{Value: jsonEvent(i + j)}
		}
		if err := producer.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for _, readers := range []int{1, 10} {
		k, fetches := testCluster(t, kafka, "")
		var wg sync.WaitGroup
		for range readers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next := int64(0); next < total; {
					out := newReply(next, DefaultMaxRecords, 1<<20)
					out.packed = true
					if err := k.fetchReply(ctx, "t", 0, out); err != nil {
						t.Error(err)
						return
					}
					if out.n == 0 {
						t.Errorf("no records at %d", next)
						return
					}
					next = out.next
				}
			}()
		}
		wg.Wait()
		fmt.Printf("readers %d: broker fetches %d\n", readers, fetches.n.Load())
	}
}
