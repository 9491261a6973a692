package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/envoy-pubsub/gateway/internal/testkit"
)

func TestProduceWritesEveryLine(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "lines"))
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "    produce_topics: [lines]\n", ""), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in := strings.NewReader("user-1\t{\"click\":1}\nno key here\nuser-2\t{\"click\":2}\n")
	var out strings.Builder
	if err := runProduce(ctx, in, &out, srv.URL("kafka"), "", "lines", 0, "\t", 2); err != nil {
		t.Fatal(err)
	}
	if want := "partition=0 offset=0\npartition=0 offset=1\npartition=0 offset=2\n"; out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	msgs, err := srv.Dial(t, "kafka").Fetch(ctx, "lines", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{{"user-1", `{"click":1}`}, {"", "no key here"}, {"user-2", `{"click":2}`}}
	if len(msgs) != len(want) {
		t.Fatalf("fetched %v", msgs)
	}
	for i, m := range msgs {
		if string(m.GetKey()) != want[i][0] || string(m.GetValue()) != want[i][1] {
			t.Errorf("record %d: key %q value %q, want %q", i, m.GetKey(), m.GetValue(), want[i])
		}
	}
}
