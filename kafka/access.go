package kafka

import (
	"path"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
)

// accessRule is a config.AccessRule with its patterns and record values
// parsed.
type accessRule struct {
	read, produce, groups []config.Template
	// records says whether the rule has records; key and headers are its
	// values.
	records bool
	key     *config.Template
	headers []headerTemplate // by name
	// claims are the claims the rule names, each of which must have a
	// value for the rule to match anything.
	claims []string
}

// headerTemplate is one header of a rule's records.
type headerTemplate struct {
	name  string
	value config.Template
}

// compileAccess parses the rules of one access section. Documents are
// validated when loaded; a rule that fails to parse anyway is dropped, so
// that it grants nothing.
func compileAccess(rules []config.AccessRule) []accessRule {
	out := make([]accessRule, 0, len(rules))
	for _, r := range rules {
		if c, ok := compileRule(r); ok {
			out = append(out, c)
		}
	}
	return out
}

func compileRule(r config.AccessRule) (accessRule, bool) {
	var c accessRule
	ok := true
	parse := func(s string) config.Template {
		t, err := config.ParseTemplate(s)
		if err != nil {
			ok = false
		}
		c.claims = append(c.claims, t.Names()...)
		return t
	}
	for _, l := range []struct {
		out *[]config.Template
		in  []string
	}{{&c.read, r.Read}, {&c.produce, r.Produce}, {&c.groups, r.Groups}} {
		for _, p := range l.in {
			*l.out = append(*l.out, parse(p))
		}
	}
	if rec := r.Records; rec != nil {
		c.records = true
		if rec.Key != nil {
			k := parse(*rec.Key)
			c.key = &k
		}
		names := make([]string, 0, len(rec.Headers))
		for n := range rec.Headers {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			c.headers = append(c.headers, headerTemplate{name: n, value: parse(rec.Headers[n])})
		}
	}
	return c, ok
}

// applies reports whether every claim the rule names has a value in claims:
// a rule naming a missing claim (or one that is not a string, number or
// list of them) matches nothing.
func (r *accessRule) applies(claims identity.Claims) bool {
	for _, n := range r.claims {
		if len(claims.Values(n)) == 0 {
			return false
		}
	}
	return true
}

// grants reports whether one of patterns, with claims filled in literally,
// matches name.
func (r *accessRule) grants(patterns []config.Template, name string, claims identity.Claims) bool {
	if len(patterns) == 0 || !r.applies(claims) {
		return false
	}
	for _, p := range patterns {
		globs, ok := p.Expand(claims.Values, escapeGlob)
		if !ok {
			continue
		}
		for _, g := range globs {
			if ok, _ := path.Match(g, name); ok {
				return true
			}
		}
	}
	return false
}

// globMeta are the characters path.Match treats specially.
const globMeta = `\*?[]`

// escapeGlob makes a claim value match only itself in a path.Match
// pattern: a claim of "*" never widens a rule.
func escapeGlob(v string) string {
	if !strings.ContainsAny(v, globMeta) {
		return v
	}
	var b strings.Builder
	for _, r := range v {
		if strings.ContainsRune(globMeta, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// literal leaves a claim value as it is (record values are compared, not
// matched as patterns).
func literal(v string) string { return v }

// recordMatches returns the record conditions of the rule's records with
// claims filled in: one per combination of the values of the list claims
// it names, none when they exceed config.MaxExpansions.
func (r *accessRule) recordMatches(claims identity.Claims) []RecordMatch {
	out := []RecordMatch{{}}
	widen := func(values []string, ok bool, set func(m *RecordMatch, v string)) bool {
		if !ok || len(out)*len(values) > config.MaxExpansions {
			return false
		}
		next := make([]RecordMatch, 0, len(out)*len(values))
		for _, m := range out {
			for _, v := range values {
				n := m
				n.Headers = slices.Clone(m.Headers)
				set(&n, v)
				next = append(next, n)
			}
		}
		out = next
		return true
	}
	if r.key != nil {
		vs, ok := r.key.Expand(claims.Values, literal)
		if !widen(vs, ok, func(m *RecordMatch, v string) { m.Key, m.HasKey = []byte(v), true }) {
			return nil
		}
	}
	for _, h := range r.headers {
		vs, ok := h.value.Expand(claims.Values, literal)
		if !widen(vs, ok, func(m *RecordMatch, v string) {
			m.Headers = append(m.Headers, kgo.RecordHeader{Key: h.name, Value: []byte(v)})
		}) {
			return nil
		}
	}
	return out
}

// access are the access sections that apply to a session (the cluster's,
// then its routes'), each of which must grant a command, and the claims the
// session was opened with.
type access struct {
	levels [][]accessRule
	claims identity.Claims
}

// set reports whether any access section applies.
func (a *access) set() bool { return a != nil && len(a.levels) > 0 }

// allows reports whether every level has a rule whose patterns of the kind
// kind picks match name.
func (a *access) allows(kind func(*accessRule) []config.Template, name string) bool {
	for _, level := range a.levels {
		if !slices.ContainsFunc(level, func(r accessRule) bool { return r.grants(kind(&r), name, a.claims) }) {
			return false
		}
	}
	return true
}

func readPatterns(r *accessRule) []config.Template  { return r.read }
func groupPatterns(r *accessRule) []config.Template { return r.groups }

// allowsProduce reports whether every level has a produce rule for topic
// whose records (if any) stand for one record value each; it returns what
// the first such rule of each level sets on every record.
func (a *access) allowsProduce(topic string) (stamps []RecordMatch, ok bool) {
	for _, level := range a.levels {
		found := false
		for i := range level {
			r := &level[i]
			if !r.grants(r.produce, topic, a.claims) {
				continue
			}
			if !r.records {
				found = true
				break
			}
			// A list claim with several values says no single value
			// to write: the rule cannot stamp a record.
			if ms := r.recordMatches(a.claims); len(ms) == 1 {
				stamps = append(stamps, ms[0])
				found = true
				break
			}
		}
		if !found {
			return nil, false
		}
	}
	return stamps, true
}

// readScope returns the records of topic the session sees: on each level,
// those of any read rule that matches topic (every record where one of them
// has no records), and across levels those every level lets it see.
func (a *access) readScope(topic string) Scope {
	var scope Scope // nil: every record
	for _, level := range a.levels {
		var own Scope
		matched, all := false, false
		for i := range level {
			r := &level[i]
			if !r.grants(r.read, topic, a.claims) {
				continue
			}
			matched = true
			if !r.records {
				all = true
				break
			}
			own = append(own, r.recordMatches(a.claims)...)
		}
		switch {
		case !matched:
			return Scope{}
		case all:
			continue
		}
		scope = intersect(scope, own)
	}
	return scope
}

// intersect returns the scope of the records both a and b see (nil: every
// record; empty: none).
func intersect(a, b Scope) Scope {
	if a == nil {
		return nonNilScope(b)
	}
	out := Scope{}
	for _, x := range a {
		for _, y := range b {
			if both, ok := x.and(y); ok {
				out = append(out, both)
			}
		}
	}
	return out
}

func nonNilScope(s Scope) Scope {
	if s == nil {
		return Scope{}
	}
	return s
}

// and returns the condition of the records both m and o match; false when
// none can (two different keys).
func (m RecordMatch) and(o RecordMatch) (RecordMatch, bool) {
	out := RecordMatch{Key: m.Key, HasKey: m.HasKey, Headers: append(slices.Clone(m.Headers), o.Headers...)}
	if o.HasKey {
		if m.HasKey && string(m.Key) != string(o.Key) {
			return RecordMatch{}, false
		}
		out.Key, out.HasKey = o.Key, true
	}
	return out, true
}

// stamp sets m's key and headers on r, replacing any the client sent under
// the same header names.
func (m RecordMatch) stamp(r *kgo.Record) {
	if m.HasKey {
		r.Key = slices.Clone(m.Key)
	}
	for _, h := range m.Headers {
		r.Headers = slices.DeleteFunc(r.Headers, func(x kgo.RecordHeader) bool { return x.Key == h.Key })
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: slices.Clone(h.Value)})
	}
}
