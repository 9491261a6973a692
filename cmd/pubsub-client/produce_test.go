package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

func TestProduceWritesEveryLine(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "lines"))
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(), "    produce_topics: [lines]\n", ""), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	in := strings.NewReader("user-1\t{\"click\":1}\nno key here\nuser-2\t{\"click\":2}\n")
	var out strings.Builder
	p := producer{topic: "lines", partition: 0, keySep: "\t", batch: 2}
	if err := p.run(ctx, srv.Dial(t, "kafka"), in, &out); err != nil {
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

func TestProducerRecordSplitsAtTheFirstDelimiterAndAddsHeaders(t *testing.T) {
	headers := []*pb.KafkaHeader{{Key: "src", Value: []byte("cli")}}
	for _, tc := range []struct {
		sep, line, key, value string
	}{
		{":", "k:v:w", "k", "v:w"},
		{":", "no delimiter", "", "no delimiter"},
		{":", ":value only", "", "value only"},
		{"", "k:v", "", "k:v"},
		{"::", "a::b", "a", "b"},
	} {
		rec := producer{keySep: tc.sep, headers: headers}.record(tc.line)
		if string(rec.GetKey()) != tc.key || string(rec.GetValue()) != tc.value || len(rec.GetHeaders()) != 1 || rec.GetHeaders()[0].GetKey() != "src" {
			t.Errorf("-K %q, line %q: key %q value %q headers %v, want key %q value %q and src=cli",
				tc.sep, tc.line, rec.GetKey(), rec.GetValue(), rec.GetHeaders(), tc.key, tc.value)
		}
	}
}
