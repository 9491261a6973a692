package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// formatter appends one record of topic/partition to buf.
type formatter func(buf *bytes.Buffer, topic string, partition int32, m *pb.KafkaMessage)

// newFormatter returns the output format options ask for: -J, -f, or the
// default line.
func newFormatter(o *options) (formatter, error) {
	switch {
	case o.json:
		return formatJSON, nil
	case o.format != "":
		return compileFormat(o.format)
	}
	return formatDefault, nil
}

// formatDefault is the line printed without -f or -J.
func formatDefault(buf *bytes.Buffer, _ string, partition int32, m *pb.KafkaMessage) {
	fmt.Fprintf(buf, "partition=%d offset=%d timestamp=%s key=%q value=%q\n", partition, m.GetOffset(),
		time.UnixMilli(m.GetTimestamp()).UTC().Format(time.RFC3339Nano), m.GetKey(), m.GetValue())
}

// jsonRecord is a record as kcat -J prints it. The protocol does not tell
// an empty key or value from none: both are null.
type jsonRecord struct {
	Topic     string   `json:"topic"`
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	TSType    string   `json:"tstype"`
	TS        int64    `json:"ts"`
	Broker    int      `json:"broker"`
	Headers   []string `json:"headers"` // name, value, name, value, ...; null when none
	Key       *string  `json:"key"`
	Payload   *string  `json:"payload"`
}

// formatJSON appends one JSON object and a newline.
func formatJSON(buf *bytes.Buffer, topic string, partition int32, m *pb.KafkaMessage) {
	rec := jsonRecord{
		Topic:     topic,
		Partition: partition,
		Offset:    m.GetOffset(),
		TSType:    "create",
		TS:        m.GetTimestamp(),
		Broker:    -1, // the gateway does not say which broker led the partition
		Key:       nullable(m.GetKey()),
		Payload:   nullable(m.GetValue()),
	}
	for _, h := range m.GetHeaders() {
		rec.Headers = append(rec.Headers, h.GetKey(), string(h.GetValue()))
	}
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	enc.Encode(rec) // cannot fail: strings and numbers only
}

// nullable returns b as a string, nil when empty.
func nullable(b []byte) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}

// compileFormat compiles a kcat -f format into a formatter.
func compileFormat(format string) (formatter, error) {
	var parts []formatter
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			s := string(lit)
			parts = append(parts, func(buf *bytes.Buffer, _ string, _ int32, _ *pb.KafkaMessage) { buf.WriteString(s) })
			lit = nil
		}
	}
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' && c != '\\' {
			lit = append(lit, c)
			continue
		}
		if i+1 == len(format) {
			return nil, fmt.Errorf("%q ends with a lone %c", format, c)
		}
		i++
		if c == '\\' {
			esc, ok := escapes[format[i]]
			if !ok {
				return nil, fmt.Errorf(`unknown escape \%c`, format[i])
			}
			lit = append(lit, esc)
			continue
		}
		if format[i] == '%' {
			lit = append(lit, '%')
			continue
		}
		field, ok := fields[format[i]]
		if !ok {
			return nil, fmt.Errorf("unknown token %%%c", format[i])
		}
		flush()
		parts = append(parts, field)
	}
	flush()
	return func(buf *bytes.Buffer, topic string, partition int32, m *pb.KafkaMessage) {
		for _, p := range parts {
			p(buf, topic, partition, m)
		}
	}, nil
}

// escapes are the backslash escapes of -f.
var escapes = map[byte]byte{'n': '\n', 't': '\t', 'r': '\r', '\\': '\\'}

// fields are the % tokens of -f, as kcat names them.
var fields = map[byte]formatter{
	't': func(buf *bytes.Buffer, topic string, _ int32, _ *pb.KafkaMessage) { buf.WriteString(topic) },
	'p': func(buf *bytes.Buffer, _ string, partition int32, _ *pb.KafkaMessage) {
		buf.WriteString(strconv.Itoa(int(partition)))
	},
	'o': func(buf *bytes.Buffer, _ string, _ int32, m *pb.KafkaMessage) {
		buf.WriteString(strconv.FormatInt(m.GetOffset(), 10))
	},
	'k': func(buf *bytes.Buffer, _ string, _ int32, m *pb.KafkaMessage) { buf.Write(m.GetKey()) },
	's': func(buf *bytes.Buffer, _ string, _ int32, m *pb.KafkaMessage) { buf.Write(m.GetValue()) },
	'h': func(buf *bytes.Buffer, _ string, _ int32, m *pb.KafkaMessage) {
		for i, h := range m.GetHeaders() {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.WriteString(h.GetKey())
			buf.WriteByte('=')
			buf.Write(h.GetValue())
		}
	},
	'T': func(buf *bytes.Buffer, _ string, _ int32, m *pb.KafkaMessage) {
		buf.WriteString(strconv.FormatInt(m.GetTimestamp(), 10))
	},
	'S': func(buf *bytes.Buffer, _ string, _ int32, m *pb.KafkaMessage) { buf.WriteString(size(m.GetValue())) },
	'K': func(buf *bytes.Buffer, _ string, _ int32, m *pb.KafkaMessage) { buf.WriteString(size(m.GetKey())) },
}

// size is the length of b as kcat prints it: -1 for none (the protocol does
// not tell an empty key or value from none).
func size(b []byte) string {
	if len(b) == 0 {
		return "-1"
	}
	return strconv.Itoa(len(b))
}
