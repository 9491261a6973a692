package kafka

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// RecordMatch is a condition on one record: its key equals Key (when HasKey)
// and it carries every header of Headers with that value. The zero
// RecordMatch matches every record.
type RecordMatch struct {
	// Key is the key a record must have, when HasKey is set.
	Key []byte
	// HasKey says whether Key applies (an empty key is a key too).
	HasKey bool
	// Headers are the headers a record must carry, each with its value.
	Headers []kgo.RecordHeader
}

// MatchFilter returns the condition of a client's KafkaFilter; a nil filter
// matches every record. A filter key applies when it is not empty.
func MatchFilter(f *pb.KafkaFilter) RecordMatch {
	if f == nil {
		return RecordMatch{}
	}
	m := RecordMatch{Key: f.GetKey(), HasKey: len(f.GetKey()) > 0}
	for _, h := range f.GetHeaders() {
		m.Headers = append(m.Headers, kgo.RecordHeader{Key: h.GetKey(), Value: h.GetValue()})
	}
	return m
}

// Matches reports whether r meets the condition.
func (m RecordMatch) Matches(r *kgo.Record) bool {
	if m.HasKey && !bytes.Equal(r.Key, m.Key) {
		return false
	}
	for _, want := range m.Headers {
		if !hasHeader(r.Headers, want) {
			return false
		}
	}
	return true
}

// IsAll reports whether the condition holds for every record.
func (m RecordMatch) IsAll() bool { return !m.HasKey && len(m.Headers) == 0 }

// hasHeader reports whether headers hold want's key with want's value (a
// header may repeat; any instance counts).
func hasHeader(headers []kgo.RecordHeader, want kgo.RecordHeader) bool {
	for _, h := range headers {
		if h.Key == want.Key && bytes.Equal(h.Value, want.Value) {
			return true
		}
	}
	return false
}

// appendKey appends a canonical, unambiguous text of the condition to b.
func (m RecordMatch) appendKey(b *strings.Builder) {
	if m.HasKey {
		b.WriteString("k")
		b.WriteString(strconv.Quote(string(m.Key)))
	}
	for _, h := range m.Headers {
		b.WriteString("h")
		b.WriteString(strconv.Quote(h.Key))
		b.WriteString(strconv.Quote(string(h.Value)))
	}
	b.WriteString(";")
}

// Scope is the set of records of a topic that a session may see: a record is
// visible when any of its conditions holds. A nil Scope sees every record.
type Scope []RecordMatch

// Visible reports whether r is in the scope.
func (s Scope) Visible(r *kgo.Record) bool {
	if s == nil {
		return true
	}
	for _, m := range s {
		if m.Matches(r) {
			return true
		}
	}
	return false
}

// View is what one reader of a partition sees: the records of its identity's
// Scope that also match its own client filter. Readers with equal Key see
// the same records, so their replies can share one encoding.
type View struct {
	// Scope is the identity's scope of the topic (nil: every record).
	Scope Scope
	// Filter is the client's own filter (zero: every record).
	Filter RecordMatch
}

// All reports whether the view sees every record.
func (v View) All() bool { return v.Scope == nil && v.Filter.IsAll() }

// Visible reports whether the view sees r.
func (v View) Visible(r *kgo.Record) bool {
	return v.Scope.Visible(r) && v.Filter.Matches(r)
}

// Key is a canonical text of the view: equal views have equal keys, and the
// view that sees every record has the empty key.
func (v View) Key() string {
	if v.All() {
		return ""
	}
	var b strings.Builder
	if v.Scope == nil {
		b.WriteString("*")
	}
	for _, m := range v.Scope {
		m.appendKey(&b)
	}
	b.WriteString("|")
	v.Filter.appendKey(&b)
	return b.String()
}
