package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
)

func TestParseStart(t *testing.T) {
	for in, want := range map[string]startSpec{
		"beginning":       {kind: startEarliest},
		"earliest":        {kind: startEarliest},
		"end":             {kind: startLatest},
		"latest":          {kind: startLatest},
		"0":               {kind: startOffset, value: 0},
		"1234":            {kind: startOffset, value: 1234},
		"-3":              {kind: startRelative, value: 3},
		"s@1700000000000": {kind: startTimestamp, value: 1700000000000},
		"@1700000000000":  {kind: startTimestamp, value: 1700000000000},
	} {
		if got, err := parseStart(in); err != nil || got != want {
			t.Errorf("%q: %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "stored", "-0", "--1", "s@", "s@x", "@-5", "1.5", "-x", "e@100"} {
		if got, err := parseStart(in); err == nil {
			t.Errorf("%q: %+v, want an error", in, got)
		}
	}
}

func TestShortFlagsAreAliasesOfTheLongOnes(t *testing.T) {
	short, err := parseArgs([]string{"-t", "orders", "-p", "2", "-o", "-5", "-e"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	long, err := parseArgs([]string{"-topic", "orders", "-partition", "2", "-from", "-5", "-follow=false"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []*options{short, long} {
		if o.topic != "orders" || !o.partitionSet || o.partition != 2 || o.start != (startSpec{kind: startRelative, value: 5}) || !o.toEnd || o.produce {
			t.Errorf("%+v", o)
		}
	}
	p, err := parseArgs([]string{"-P", "-K", ":", "-H", "a=1", "-H", "b=x=y"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	wantHeaders := []*pb.KafkaHeader{{Key: "a", Value: []byte("1")}, {Key: "b", Value: []byte("x=y")}}
	if !p.produce || p.keySep != ":" || len(p.headers) != 2 || !proto.Equal(p.headers[0], wantHeaders[0]) || !proto.Equal(p.headers[1], wantHeaders[1]) {
		t.Errorf("-P -K -H: %+v", p)
	}
	if q, _ := parseArgs([]string{"-produce", "-key-separator", "\t"}, io.Discard); !q.produce || q.keySep != "\t" {
		t.Errorf("-produce -key-separator: %+v", q)
	}
}

func TestDefaults(t *testing.T) {
	o, err := parseArgs(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.url != "ws://127.0.0.1:9080/kafka" || o.topic != "demo" || o.partitionSet || o.start.kind != startEarliest ||
		o.toEnd || o.count != 0 || o.produce || o.batch != 100 || o.filter != nil {
		t.Errorf("defaults %+v", o)
	}
	if newProducer(o).partition != -1 {
		t.Errorf("produce without -p: partition %d, want -1 (by key)", newProducer(o).partition)
	}
	o, _ = parseArgs([]string{"-P", "-p", "0"}, io.Discard)
	if newProducer(o).partition != 0 {
		t.Errorf("produce -p 0: partition %d", newProducer(o).partition)
	}
}

func TestRefusedCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "stored"}, `invalid value "stored" for flag -o`},
		{[]string{"-p", "x"}, `invalid value "x" for flag -p`},
		{[]string{"-p", "-1"}, "-p: want a partition >= 0 when reading"},
		{[]string{"-C", "-P"}, "-C and -P are two modes"},
		{[]string{"-P", "-e"}, "-e does not apply when producing (-P)"},
		{[]string{"-P", "-G", "g"}, "-G does not apply when producing (-P)"},
		{[]string{"-P", "-filter-key", "k"}, "-filter-key does not apply when producing (-P)"},
		{[]string{"-K", ":"}, "-K does not apply when reading (-C)"},
		{[]string{"-H", "a=b"}, "-H does not apply when reading (-C)"},
		{[]string{"-P", "-H", "novalue"}, `invalid value "novalue" for flag -H`},
		{[]string{"-filter-header", "=v"}, `invalid value "=v" for flag -filter-header`},
		{[]string{"-f", "%s", "-J"}, "-f and -J are two output formats"},
		{[]string{"-f", "%x"}, "-f: unknown token %x"},
		{[]string{"-G", "g", "-p", "0"}, "-p does not apply with -G"},
		{[]string{"-G", "g", "-o", "-3"}, "-o -N does not apply with -G"},
		{[]string{"-c", "-1"}, "-c: want a count >= 0"},
		{[]string{"-t", ""}, "-t: give a topic"},
		{[]string{"-token", "a", "-token-file", "f"}, "-token and -token-file: give one"},
		{[]string{"-url", "wss://h/k", "-cert", "c.pem"}, "-cert and -key go together"},
		{[]string{"-cafile", "ca.pem"}, "-cafile applies to wss:// URLs only"},
		{[]string{"-insecure"}, "-insecure applies to wss:// URLs only"},
		{[]string{"-t", "x", "extra"}, `unexpected argument "extra"`},
	} {
		var stderr strings.Builder
		o, err := parseArgs(tc.args, &stderr)
		if !errors.Is(err, errUsage) || o != nil || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: %v, stderr %q; want usage error %q", tc.args, err, stderr.String(), tc.want)
		}
	}
	if _, err := parseArgs([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestRunExitStatus(t *testing.T) {
	var stderr strings.Builder
	if code := run(t.Context(), []string{"-h"}, nil, io.Discard, &stderr); code != 0 || !strings.Contains(stderr.String(), "Usage: pubsub-client") {
		t.Errorf("-h: exit %d, stderr %q", code, stderr.String())
	}
	if code := run(t.Context(), []string{"-o", "nowhere"}, nil, io.Discard, io.Discard); code != 1 {
		t.Errorf("bad -o: exit %d, want 1", code)
	}
	stderr.Reset()
	if code := run(t.Context(), []string{"-url", "ws://127.0.0.1:1/kafka", "-ping-interval", "0"}, nil, io.Discard, &stderr); code != 1 ||
		!strings.HasPrefix(stderr.String(), "pubsub-client: client: dial ws://127.0.0.1:1/kafka") {
		t.Errorf("no server: exit %d, stderr %q", code, stderr.String())
	}
}
