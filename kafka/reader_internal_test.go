package kafka

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestReaderOfTopicDeletedBeforeTheConsumerLoadsItFails deletes a topic
// after a reader started on it but before the readers' consumer loaded its
// metadata: the consumer never fetches the partition, so no fetch fails,
// and the reader must still end with ErrTopicNotFound.
func TestReaderOfTopicDeletedBeforeTheConsumerLoadsItFails(t *testing.T) {
	kafka, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "warm", "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	k, _ := testCluster(t, kafka, "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// A reader of another topic starts the consumer first: its metadata
	// requests then name both topics, unlike the reader's own lookups.
	warm, err := k.acquireReader(ctx, "warm", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer k.releaseReader(warm)
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	kafka.ControlKey(int16(kmsg.Metadata), func(req kmsg.Request) (kmsg.Response, error, bool) {
		kafka.KeepControl()
		var topics []string
		for _, rt := range req.(*kmsg.MetadataRequest).Topics {
			if rt.Topic != nil {
				topics = append(topics, *rt.Topic)
			}
		}
		if slices.Contains(topics, "t") && slices.Contains(topics, "warm") {
			once.Do(func() {
				close(held)
				kafka.SleepControl(func() { <-release })
			})
		}
		return nil, nil, false
	})
	r, err := k.acquireReader(ctx, "t", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer k.releaseReader(r)
	select {
	case <-held: // the consumer's first metadata request naming t waits
	case <-ctx.Done():
		t.Fatal("the consumer never asked for the topic's metadata")
	}
	if err := kafka.DeleteTopic("t"); err != nil {
		t.Fatal(err)
	}
	close(release)

	for {
		changed, _, err := r.state()
		if err != nil {
			if !errors.Is(err, ErrTopicNotFound) {
				t.Fatalf("reader ended with %v, want %v", err, ErrTopicNotFound)
			}
			return
		}
		select {
		case <-changed:
		case <-time.After(10 * time.Second):
			t.Fatal("the reader of the deleted topic goes on waiting")
		}
	}
}
