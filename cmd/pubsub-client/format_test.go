package main

import (
	"bytes"
	"testing"

	pb "github.com/envoy-pubsub/gateway/proto"
)

func TestFormatTable(t *testing.T) {
	rec := &pb.KafkaMessage{Offset: 42, Timestamp: 1700000000123, Key: []byte("user-1"), Value: []byte(`{"a":"<b>"}`),
		Headers: []*pb.KafkaHeader{{Key: "trace", Value: []byte("t1")}, {Key: "empty"}}}
	bare := &pb.KafkaMessage{Offset: 7, Timestamp: 5}
	for _, tc := range []struct {
		format string
		msg    *pb.KafkaMessage
		want   string
	}{
		{`%s\n`, rec, "{\"a\":\"<b>\"}\n"},
		{`%t/%p/%o`, rec, "orders/3/42"},
		{`%k=%s`, rec, `user-1={"a":"<b>"}`},
		{`%h`, rec, "trace=t1,empty="},
		{`%h`, bare, ""},
		{`%T %S %K`, rec, "1700000000123 11 6"},
		{`%S %K`, bare, "-1 -1"},
		{`[%k][%s]`, bare, "[][]"},
		{`a\tb\rc\\d%%e`, rec, "a\tb\rc\\d%e"},
		{`no tokens`, rec, "no tokens"},
		{``, rec, ""},
	} {
		f, err := compileFormat(tc.format)
		if err != nil {
			t.Errorf("%q: %v", tc.format, err)
			continue
		}
		var buf bytes.Buffer
		f(&buf, "orders", 3, tc.msg)
		if buf.String() != tc.want {
			t.Errorf("%q: %q, want %q", tc.format, buf.String(), tc.want)
		}
	}
}

func TestFormatRefusesWhatKcatDoesNotKnow(t *testing.T) {
	for format, want := range map[string]string{
		`%x`:    "unknown token %x",
		`%`:     `"%" ends with a lone %`,
		`abc\`:  `"abc\\" ends with a lone \`,
		`\q`:    `unknown escape \q`,
		`%s %Z`: "unknown token %Z",
	} {
		if _, err := compileFormat(format); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %q", format, err, want)
		}
	}
}

func TestJSONTable(t *testing.T) {
	for _, tc := range []struct {
		msg  *pb.KafkaMessage
		want string
	}{
		{&pb.KafkaMessage{Offset: 1, Timestamp: 1700000000123, Key: []byte("k"), Value: []byte(`{"x":"<&>"}`),
			Headers: []*pb.KafkaHeader{{Key: "h1", Value: []byte("v1")}, {Key: "h2"}}},
			`{"topic":"orders","partition":2,"offset":1,"tstype":"create","ts":1700000000123,"broker":-1,"headers":["h1","v1","h2",""],"key":"k","payload":"{\"x\":\"<&>\"}"}` + "\n"},
		{&pb.KafkaMessage{Offset: 0, Timestamp: 9},
			`{"topic":"orders","partition":2,"offset":0,"tstype":"create","ts":9,"broker":-1,"headers":null,"key":null,"payload":null}` + "\n"},
	} {
		var buf bytes.Buffer
		formatJSON(&buf, "orders", 2, tc.msg)
		if buf.String() != tc.want {
			t.Errorf("got  %s\nwant %s", buf.String(), tc.want)
		}
	}
}

func TestDefaultLine(t *testing.T) {
	var buf bytes.Buffer
	formatDefault(&buf, "orders", 1, &pb.KafkaMessage{Offset: 3, Timestamp: 1700000000100, Key: []byte("k"), Value: []byte("a\tb")})
	if want := "partition=1 offset=3 timestamp=2023-11-14T22:13:20.1Z key=\"k\" value=\"a\\tb\"\n"; buf.String() != want {
		t.Errorf("%q, want %q", buf.String(), want)
	}
}
