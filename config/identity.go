package config

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
)

// DefaultJWKSRefreshInterval is how often a jwks_uri is fetched again.
const DefaultJWKSRefreshInterval = 10 * time.Minute

// Identity says how the gateway learns who a client is.
type Identity struct {
	// Required refuses (401) an upgrade without a verified identity.
	Required bool `json:"required,omitempty"`
	// JWT verifies tokens in the gateway itself: at the upgrade of the
	// standalone server, and for in-band refresh (cmd_auth) everywhere.
	JWT *JWT `json:"jwt,omitempty"`
	// EnvoyJWTMetadata is the payload_in_metadata key under which Envoy's
	// jwt_authn filter stores the verified payload (namespace
	// envoy.filters.http.jwt_authn); inside Envoy the filter reads the
	// claims from there.
	EnvoyJWTMetadata string `json:"envoy_jwt_metadata,omitempty"`
}

// Verifies reports whether i names a source of verified identities; a nil
// Identity names none.
func (i *Identity) Verifies() bool {
	return i != nil && (i.JWT != nil || i.EnvoyJWTMetadata != "")
}

// JWT configures the verification of JSON Web Tokens signed with RS256,
// ES256 or EdDSA keys of a JWK Set.
type JWT struct {
	// JWKSFile is a JWK Set file, read at start.
	JWKSFile string `json:"jwks_file,omitempty"`
	// JWKSURI is a JWK Set URL, fetched on first use, cached and fetched
	// again after JWKSRefreshInterval (and, at most every 30 s, when a
	// token names an unknown key).
	JWKSURI string `json:"jwks_uri,omitempty"`
	// JWKSRefreshInterval is how often JWKSURI is fetched again.
	// Default 10m.
	JWKSRefreshInterval Duration `json:"jwks_refresh_interval,omitempty"`
	// Issuer, if set, must equal a token's iss claim.
	Issuer string `json:"issuer,omitempty"`
	// Audiences, if set, must hold one of a token's aud values.
	Audiences []string `json:"audiences,omitempty"`
}

func (i *Identity) complete(key string) error {
	if i.JWT == nil && i.EnvoyJWTMetadata == "" {
		return fmt.Errorf("config: %s: set jwt (tokens the gateway verifies) or envoy_jwt_metadata (tokens Envoy's jwt_authn verified)", key)
	}
	if i.JWT != nil {
		if err := i.JWT.complete(key + ".jwt"); err != nil {
			return err
		}
	}
	return nil
}

func (j *JWT) complete(key string) error {
	switch {
	case j.JWKSFile == "" && j.JWKSURI == "":
		return fmt.Errorf("config: %s.jwks_file: one of jwks_file or jwks_uri is required", key)
	case j.JWKSFile != "" && j.JWKSURI != "":
		return fmt.Errorf("config: %s.jwks_uri: give jwks_file or jwks_uri, not both", key)
	case j.JWKSURI != "":
		u, err := url.Parse(j.JWKSURI)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("config: %s.jwks_uri: %q is not an http(s) URL", key, j.JWKSURI)
		}
	}
	if err := defaultDuration(key+".jwks_refresh_interval", &j.JWKSRefreshInterval, DefaultJWKSRefreshInterval); err != nil {
		return err
	}
	for i, a := range j.Audiences {
		if a == "" {
			return fmt.Errorf("config: %s.audiences[%d]: empty audience", key, i)
		}
	}
	return nil
}

// AccessRule grants, to the identity a session was opened with, the topics
// (read, produce) and consumer groups (groups) its patterns match. A
// pattern is a topic pattern (exact names and path.Match globs) in which
// {name} stands for the value of the verified claim name: a string, a
// number, or any element of a list, always matched literally. A rule naming
// a claim the identity lacks matches nothing.
type AccessRule struct {
	// Read are the topics the rule lets a session fetch, list offsets of,
	// subscribe to and commit offsets of.
	Read []string `json:"read,omitempty"`
	// Produce are the topics the rule lets a session write to.
	Produce []string `json:"produce,omitempty"`
	// Groups are the consumer group ids the rule lets a session use.
	Groups []string `json:"groups,omitempty"`
	// Records, on a read rule, are the records of its topics the session
	// sees; on a produce rule, what is set on every record it writes,
	// replacing what the client sent. Absent: every record, nothing set.
	Records *RecordsRule `json:"records,omitempty"`
}

// RecordsRule is a condition on records: every header of Headers present
// with that value, and the key equal to Key when Key is set. Values may hold
// {claim} placeholders.
type RecordsRule struct {
	// Headers maps a header name to the value a record carries.
	Headers map[string]string `json:"headers,omitempty"`
	// Key, if set, is the record key.
	Key *string `json:"key,omitempty"`
}

// CheckRouteAccess reports a rule of route r that names a claim while id
// (the identity section of the filter-level document r applies under) names
// no source of identities: such a rule could never match. The error names
// the rule's key.
func CheckRouteAccess(r *Route, id *Identity) error {
	return validateAccess("access", r.Access, id.Verifies())
}

// validateAccess checks the rules of an access section at key; claims says
// whether placeholders can ever be filled (an identity is configured).
func validateAccess(key string, rules []AccessRule, claims bool) error {
	if rules != nil && len(rules) == 0 {
		return fmt.Errorf("config: %s: an empty list allows nothing; remove it or add rules", key)
	}
	for i, r := range rules {
		rk := fmt.Sprintf("%s[%d]", key, i)
		if len(r.Read) == 0 && len(r.Produce) == 0 && len(r.Groups) == 0 {
			return fmt.Errorf("config: %s: a rule needs read, produce or groups", rk)
		}
		if r.Records != nil && len(r.Read) == 0 && len(r.Produce) == 0 {
			return fmt.Errorf("config: %s.records: records apply to read and produce rules only", rk)
		}
		for _, list := range []struct {
			name     string
			patterns []string
		}{{"read", r.Read}, {"produce", r.Produce}, {"groups", r.Groups}} {
			for j, p := range list.patterns {
				if err := validatePattern(fmt.Sprintf("%s.%s[%d]", rk, list.name, j), p, claims); err != nil {
					return err
				}
			}
		}
		if r.Records == nil {
			continue
		}
		if len(r.Records.Headers) == 0 && r.Records.Key == nil {
			return fmt.Errorf("config: %s.records: set headers or key", rk)
		}
		for _, name := range sortedKeys(r.Records.Headers) {
			hk := fmt.Sprintf("%s.records.headers.%s", rk, name)
			if name == "" {
				return fmt.Errorf("config: %s: empty header name", hk)
			}
			if err := validateTemplate(hk, r.Records.Headers[name], claims); err != nil {
				return err
			}
		}
		if r.Records.Key != nil {
			if err := validateTemplate(rk+".records.key", *r.Records.Key, claims); err != nil {
				return err
			}
		}
	}
	return nil
}

// validatePattern checks a topic or group pattern with placeholders.
func validatePattern(key, pattern string, claims bool) error {
	if pattern == "" {
		return fmt.Errorf("config: %s: empty pattern", key)
	}
	if err := validateTemplate(key, pattern, claims); err != nil {
		return err
	}
	t, _ := ParseTemplate(pattern)
	if _, err := path.Match(t.Glob(func(string) string { return "x" }), ""); err != nil {
		return fmt.Errorf("config: %s: bad pattern %q", key, pattern)
	}
	return nil
}

// validateTemplate checks the placeholders of s.
func validateTemplate(key, s string, claims bool) error {
	t, err := ParseTemplate(s)
	if err != nil {
		return fmt.Errorf("config: %s: %w", key, err)
	}
	if names := t.Names(); len(names) > 0 && !claims {
		return fmt.Errorf("config: %s: {%s} names a claim, but identity is not configured (set identity.jwt or identity.envoy_jwt_metadata), so the rule could never match", key, names[0])
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Template is a string in which {name} stands for the value of claim name.
// Braces have no other use: a { without its } is an error.
type Template struct {
	// literals surround the placeholders: len(literals) == len(names)+1.
	literals []string
	names    []string
}

// ParseTemplate parses s.
func ParseTemplate(s string) (Template, error) {
	var t Template
	rest := s
	for {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			t.literals = append(t.literals, rest)
			return t, nil
		}
		if rest[open] == '}' {
			return Template{}, fmt.Errorf("%q: } without {", s)
		}
		end := strings.IndexAny(rest[open+1:], "{}")
		if end < 0 || rest[open+1+end] != '}' {
			return Template{}, fmt.Errorf("%q: { without its }", s)
		}
		name := rest[open+1 : open+1+end]
		if name == "" {
			return Template{}, fmt.Errorf("%q: {} names no claim", s)
		}
		t.literals = append(t.literals, rest[:open])
		t.names = append(t.names, name)
		rest = rest[open+1+end+1:]
	}
}

// Names returns the claims the template names, in order.
func (t Template) Names() []string { return t.names }

// Glob returns the template with each placeholder replaced by value(name);
// the literal parts are kept as they are.
func (t Template) Glob(value func(name string) string) string {
	var b strings.Builder
	for i, lit := range t.literals {
		b.WriteString(lit)
		if i < len(t.names) {
			b.WriteString(value(t.names[i]))
		}
	}
	return b.String()
}

// MaxExpansions bounds the strings one template expands to (the product of
// the lengths of the list claims it names); a template that would expand to
// more matches nothing.
const MaxExpansions = 4096

// Expand returns every string the template stands for when each placeholder
// takes, in turn, each of values(name), passed through escape: one string
// per combination. It returns false when a claim has no value or the
// combinations exceed MaxExpansions.
func (t Template) Expand(values func(name string) []string, escape func(string) string) ([]string, bool) {
	out := []string{t.literals[0]}
	for i, name := range t.names {
		vs := values(name)
		if len(vs) == 0 || len(out)*len(vs) > MaxExpansions {
			return nil, false
		}
		next := make([]string, 0, len(out)*len(vs))
		for _, prefix := range out {
			for _, v := range vs {
				next = append(next, prefix+escape(v)+t.literals[i+1])
			}
		}
		out = next
	}
	return out, true
}
