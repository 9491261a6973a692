// Package config holds the configuration document shared by the Envoy filter's
// plugin_config and the standalone server: the session listener, the Kafka
// clusters sessions may reach, and the session limits. A document is parsed
// once into typed, validated structs with every default filled in.
package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"reflect"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Defaults of the session limits, safe for a public endpoint.
const (
	DefaultMaxFrameBytes     = 1 << 20
	DefaultIdleTimeout       = 60 * time.Second
	DefaultMaxSessions       = 10000
	DefaultMaxInFlight       = 16
	DefaultWriteTimeout      = 30 * time.Second
	DefaultPushQueueBytes    = 1 << 20
	DefaultPushStallTimeout  = 10 * time.Second
	DefaultPingInterval      = 30 * time.Second
	DefaultPongTimeout       = 15 * time.Second
	DefaultMaxPendingBytes   = 4 << 20
	DefaultMaxProduceRecords = 1000
	DefaultMaxMemoryBytes    = 256 << 20

	DefaultFetchMaxBytes    = 1 << 20
	DefaultFetchMaxWait     = 100 * time.Millisecond
	DefaultWindowBytes      = 32 << 20
	DefaultCacheBytes       = 64 << 20
	DefaultRequestTimeout   = 5 * time.Second
	DefaultListenerSocket   = "/var/run/envoy-pubsub/pubsub.sock"
	DefaultTicketTTL        = 30 * time.Second
	DefaultMaxTickets       = 100000
	maxFrameBytesUpperBound = 64 << 20
)

// Document is the whole configuration: filter-level plugin_config in Envoy, or
// the standalone server's file.
type Document struct {
	// Listener is the unix socket the in-process session server binds (Envoy
	// only; the standalone server listens where its -listen flag says).
	Listener string `json:"listener,omitempty"`
	// KafkaClusters maps an Envoy cluster name (or standalone path) to a
	// Kafka connection.
	KafkaClusters map[string]*KafkaCluster `json:"kafka_clusters,omitempty"`
	// Session holds the per-session limits.
	Session Session `json:"session"`
	// Tickets controls the one-time tickets of the Envoy hand-off.
	Tickets Tickets `json:"tickets"`
	// Limits holds the bounds shared by all sessions of the process.
	Limits Limits `json:"limits"`
	// Identity says how a client's identity is verified; nil means
	// clients are anonymous and access rules may not name claims.
	Identity *Identity `json:"identity,omitempty"`
}

// Limits bound what all sessions of one process hold together.
type Limits struct {
	// MaxMemoryBytes bounds the reply bytes all sessions together have
	// built or queued but not written; at the bound the sessions holding
	// the most wait first and new upgrades get 503. Default 256 MiB.
	MaxMemoryBytes int `json:"max_memory_bytes,omitempty"`
}

// KafkaCluster is how sessions reach one Kafka cluster.
type KafkaCluster struct {
	// Brokers are the seed brokers, host:port.
	Brokers []string `json:"brokers"`
	// TLS enables and configures TLS to the brokers; nil means plaintext.
	TLS *TLS `json:"tls,omitempty"`
	// SASL enables and configures SASL authentication; nil means none.
	SASL *SASL `json:"sasl,omitempty"`
	// Topics is an optional allow-list of exact names and path.Match globs;
	// absent means every topic may be read.
	Topics []string `json:"topics,omitempty"`
	// ProduceTopics is the allow-list (names and globs) of topics clients
	// may write to; absent means producing is refused.
	ProduceTopics []string `json:"produce_topics,omitempty"`
	// Groups is the allow-list (names and globs) of consumer group ids
	// clients may use; absent means group commands are refused.
	Groups []string `json:"groups,omitempty"`
	// FetchMaxBytes bounds the bytes one fetch returns (at least one record
	// is always returned when one exists). Default 1 MiB.
	FetchMaxBytes int32 `json:"fetch_max_bytes,omitempty"`
	// FetchMaxWait is how long a fetch at the end of the log waits for new
	// records before answering empty. Default 100ms.
	FetchMaxWait Duration `json:"fetch_max_wait,omitempty"`
	// RequestTimeout bounds one command's Kafka work, retries included.
	// Default 5s.
	RequestTimeout Duration `json:"request_timeout,omitempty"`
	// WindowBytes bounds the records the cluster's record cache keeps for
	// one partition (as the cache counts them: packed or decoded, with a
	// fixed cost per record), so that one busy partition cannot take the
	// whole cache; sessions of one partition that drift further apart than
	// this decode the same batches again (a session ahead holds back its
	// read-ahead while the others still read the partition's chunks). Default 32 MiB, half the default
	// cache (BENCHMARKS.md measures ten sessions of one partition with 16
	// and 32 MiB).
	WindowBytes int `json:"window_bytes,omitempty"`
	// Access are identity-scoped rules on top of the allow-lists: where
	// set, a command needs a rule of its kind that matches. See AccessRule.
	Access []AccessRule `json:"access,omitempty"`
	// CacheBytes bounds the decoded records the cluster's record cache
	// keeps for all partitions together, counted as WindowBytes counts
	// them; the oldest are evicted first. Every session reading a partition
	// (fetches and subscriptions) is served from it. Default 64 MiB.
	CacheBytes int `json:"cache_bytes,omitempty"`
}

// TLS configures TLS to the brokers.
type TLS struct {
	// Enabled turns TLS on.
	Enabled bool `json:"enabled"`
	// Verify checks the broker certificate chain and name; default true.
	Verify *bool `json:"verify,omitempty"`
	// CAFile is a PEM bundle of trusted CAs; empty means the system roots.
	CAFile string `json:"ca_file,omitempty"`
	// CertFile and KeyFile are the client certificate for mutual TLS.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// ServerName overrides the name checked in the broker certificate.
	ServerName string `json:"server_name,omitempty"`
}

// VerifyEnabled reports whether broker certificates are verified.
func (t *TLS) VerifyEnabled() bool { return t.Verify == nil || *t.Verify }

// SASL mechanisms.
const (
	MechanismPlain       = "PLAIN"
	MechanismScramSHA256 = "SCRAM-SHA-256"
	MechanismScramSHA512 = "SCRAM-SHA-512"
	// MechanismOAuthBearer and MechanismAWSMSKIAM are configured by the
	// keys of SASLCloud (config/sasl.go).
	MechanismOAuthBearer = "OAUTHBEARER"
	MechanismAWSMSKIAM   = "AWS_MSK_IAM"
)

// SASL configures SASL authentication. Exactly one password source is used:
// Password inline, PasswordFile, PasswordEnv (standalone server) or
// PasswordSecret (an Envoy generic_secret read per request). OAUTHBEARER
// and AWS_MSK_IAM take the keys of SASLCloud instead.
type SASL struct {
	Mechanism      string `json:"mechanism"`
	Username       string `json:"username,omitempty"`
	Password       Secret `json:"password,omitempty"`
	PasswordFile   string `json:"password_file,omitempty"`
	PasswordEnv    string `json:"password_env,omitempty"`
	PasswordSecret string `json:"password_secret,omitempty"`
	SASLCloud
}

// Session limits.
type Session struct {
	// MaxFrameBytes bounds one WebSocket message; larger ones close the
	// session with 1009. Default 1 MiB.
	MaxFrameBytes int `json:"max_frame_bytes,omitempty"`
	// IdleTimeout closes a session whose client sent no request or ping
	// for this long (its pongs do not count). A session with a live
	// subscription is exempt: its client need not send anything while
	// records are pushed to it. Default 60s.
	IdleTimeout Duration `json:"idle_timeout,omitempty"`
	// MaxSessions bounds concurrent sessions; upgrades beyond it get 503.
	// Default 10000.
	MaxSessions int `json:"max_sessions,omitempty"`
	// MaxInFlight bounds the requests one session runs at once; a session
	// at the bound is not read until a request finishes. Default 16.
	MaxInFlight int `json:"max_in_flight,omitempty"`
	// WriteTimeout closes a session whose client does not read a reply for
	// this long. Default 30s.
	WriteTimeout Duration `json:"write_timeout,omitempty"`
	// PushQueueBytes bounds the subscription pushes a session has queued
	// but not written; a full queue pauses its deliveries. Default 1 MiB.
	PushQueueBytes int `json:"push_queue_bytes,omitempty"`
	// PushStallTimeout closes a session (code 4008, slow consumer) whose
	// deliveries stay paused this long. Default 10s.
	PushStallTimeout Duration `json:"push_stall_timeout,omitempty"`
	// PingInterval is how often the server sends a WebSocket ping to every
	// session, so that proxies see traffic and dead peers are found.
	// Default 30s.
	PingInterval Duration `json:"ping_interval,omitempty"`
	// PongTimeout closes a session whose pong has not come this long after
	// a ping. Default 15s.
	PongTimeout Duration `json:"pong_timeout,omitempty"`
	// MaxPendingBytes bounds the reply bytes one session has built or
	// queued but not written; a session at the bound reads no more
	// requests until its replies drain. Default 4 MiB.
	MaxPendingBytes int `json:"max_pending_bytes,omitempty"`
	// MaxProduceRecords bounds the records of one produce request.
	// Default 1000.
	MaxProduceRecords int `json:"max_produce_records,omitempty"`
	// ProduceBytesPerSecond bounds the record bytes one session produces
	// per second; 0 (the default) means no bound.
	ProduceBytesPerSecond int `json:"produce_bytes_per_second,omitempty"`
	// DrainTime is how long Envoy keeps the connections of a listener it
	// drains (its --drain-time-s), in Envoy only; 0 (the default) means
	// unknown. When set, a newer filter-level configuration on the same
	// listener socket is taken as the replacement of this one by a listener
	// update, which drains this one's listener: the sessions this
	// configuration admitted get close 1001 shortly before Envoy would close
	// their connections (see sessionhost.DrainLead). Leave it 0 where a
	// newer configuration does not drain the older one (the filter's config
	// from extension config discovery, several listeners on one socket).
	DrainTime Duration `json:"drain_time,omitempty"`
}

// Tickets controls the one-time tickets that hand an upgrade from the Envoy
// filter to the in-process session server.
type Tickets struct {
	// TTL is how long an issued ticket may be redeemed. Default 30s.
	TTL Duration `json:"ttl,omitempty"`
	// MaxOutstanding bounds unredeemed tickets. Default 100000.
	MaxOutstanding int `json:"max_outstanding,omitempty"`
}

// Route is a per-route document (Envoy ConfigsPerRoute) that narrows what a
// route's sessions may do.
type Route struct {
	// Topics narrows the cluster's allow-list for this route.
	Topics []string `json:"topics,omitempty"`
	// ProduceTopics narrows the cluster's produce allow-list for this route.
	ProduceTopics []string `json:"produce_topics,omitempty"`
	// Groups narrows the cluster's group allow-list for this route.
	Groups []string `json:"groups,omitempty"`
	// Access narrows what the cluster's access rules allow, as another
	// level of rules that must also match.
	Access []AccessRule `json:"access,omitempty"`
}

// Parse decodes a YAML or JSON document strictly (unknown keys are errors),
// fills in defaults and validates it.
func Parse(data []byte) (*Document, error) {
	var d Document
	if err := decodeStrict(data, &d); err != nil {
		return nil, err
	}
	if err := d.complete(); err != nil {
		return nil, err
	}
	return &d, nil
}

// Load reads and parses the document in file.
func Load(file string) (*Document, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	d, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return d, nil
}

// ParseRoute decodes and validates a per-route document.
func ParseRoute(data []byte) (*Route, error) {
	var r Route
	if err := decodeStrict(data, &r); err != nil {
		return nil, err
	}
	for key, list := range map[string][]string{"topics": r.Topics, "produce_topics": r.ProduceTopics, "groups": r.Groups} {
		if err := validateTopics(key, list); err != nil {
			return nil, err
		}
	}
	// A route document does not know whether its listener has an identity:
	// its rules may name claims, which match nothing without one.
	if err := validateAccess("access", r.Access, true); err != nil {
		return nil, err
	}
	return &r, nil
}

func decodeStrict(data []byte, v any) error {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("config: %s", describeDecodeError(err))
	}
	return nil
}

// describeDecodeError names the offending key of a json decoding error.
func describeDecodeError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := te.Type.String()
		if te.Type == durationType {
			want = "a duration such as \"30s\""
		}
		return fmt.Sprintf("%s: expected %s, got %s", te.Field, want, te.Value)
	}
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return "unknown key " + rest
	}
	return strings.TrimPrefix(msg, "json: ")
}

// complete fills defaults and validates; every error names its key.
func (d *Document) complete() error {
	if d.Listener == "" {
		d.Listener = DefaultListenerSocket
	}
	s := &d.Session
	if s.MaxFrameBytes == 0 {
		s.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if s.MaxFrameBytes < 64 || s.MaxFrameBytes > maxFrameBytesUpperBound {
		return fmt.Errorf("config: session.max_frame_bytes: must be between 64 and %d", maxFrameBytesUpperBound)
	}
	if err := defaultDuration("session.idle_timeout", &s.IdleTimeout, DefaultIdleTimeout); err != nil {
		return err
	}
	if err := defaultDuration("session.write_timeout", &s.WriteTimeout, DefaultWriteTimeout); err != nil {
		return err
	}
	if err := defaultCount("session.max_sessions", &s.MaxSessions, DefaultMaxSessions); err != nil {
		return err
	}
	if err := defaultCount("session.max_in_flight", &s.MaxInFlight, DefaultMaxInFlight); err != nil {
		return err
	}
	if err := defaultCount("session.push_queue_bytes", &s.PushQueueBytes, DefaultPushQueueBytes); err != nil {
		return err
	}
	if err := defaultDuration("session.push_stall_timeout", &s.PushStallTimeout, DefaultPushStallTimeout); err != nil {
		return err
	}
	if err := defaultDuration("session.ping_interval", &s.PingInterval, DefaultPingInterval); err != nil {
		return err
	}
	if err := defaultDuration("session.pong_timeout", &s.PongTimeout, DefaultPongTimeout); err != nil {
		return err
	}
	if err := defaultCount("session.max_pending_bytes", &s.MaxPendingBytes, DefaultMaxPendingBytes); err != nil {
		return err
	}
	if err := defaultCount("session.max_produce_records", &s.MaxProduceRecords, DefaultMaxProduceRecords); err != nil {
		return err
	}
	if s.DrainTime < 0 {
		return fmt.Errorf("config: session.drain_time: must not be negative")
	}
	if s.ProduceBytesPerSecond < 0 {
		return fmt.Errorf("config: session.produce_bytes_per_second: must not be negative")
	}
	if err := defaultCount("limits.max_memory_bytes", &d.Limits.MaxMemoryBytes, DefaultMaxMemoryBytes); err != nil {
		return err
	}
	if d.Limits.MaxMemoryBytes < s.MaxPendingBytes {
		return fmt.Errorf("config: limits.max_memory_bytes: must be at least session.max_pending_bytes")
	}
	if err := defaultDuration("tickets.ttl", &d.Tickets.TTL, DefaultTicketTTL); err != nil {
		return err
	}
	if err := defaultCount("tickets.max_outstanding", &d.Tickets.MaxOutstanding, DefaultMaxTickets); err != nil {
		return err
	}
	if d.Identity != nil {
		if err := d.Identity.complete("identity"); err != nil {
			return err
		}
	}
	for _, name := range d.ClusterNames() {
		c := d.KafkaClusters[name]
		if c == nil {
			return fmt.Errorf("config: kafka_clusters.%s: must be an object", name)
		}
		if err := c.complete("kafka_clusters." + name); err != nil {
			return err
		}
		if err := validateAccess("kafka_clusters."+name+".access", c.Access, d.Identity.Verifies()); err != nil {
			return err
		}
	}
	return nil
}

// ClusterNames returns the names of the Kafka clusters, sorted.
func (d *Document) ClusterNames() []string {
	names := make([]string, 0, len(d.KafkaClusters))
	for n := range d.KafkaClusters {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (c *KafkaCluster) complete(key string) error {
	if len(c.Brokers) == 0 {
		return fmt.Errorf("config: %s.brokers: at least one broker is required", key)
	}
	for i, b := range c.Brokers {
		if !validHostPort(b) {
			return fmt.Errorf("config: %s.brokers[%d]: %q is not host:port", key, i, b)
		}
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = DefaultFetchMaxBytes
	}
	if c.FetchMaxBytes < 1 {
		return fmt.Errorf("config: %s.fetch_max_bytes: must be positive", key)
	}
	if err := defaultCount(key+".window_bytes", &c.WindowBytes, DefaultWindowBytes); err != nil {
		return err
	}
	if err := defaultCount(key+".cache_bytes", &c.CacheBytes, DefaultCacheBytes); err != nil {
		return err
	}
	if err := defaultDuration(key+".fetch_max_wait", &c.FetchMaxWait, DefaultFetchMaxWait); err != nil {
		return err
	}
	if err := defaultDuration(key+".request_timeout", &c.RequestTimeout, DefaultRequestTimeout); err != nil {
		return err
	}
	if c.RequestTimeout.Duration() <= c.FetchMaxWait.Duration() {
		return fmt.Errorf("config: %s.request_timeout: must be longer than fetch_max_wait", key)
	}
	if err := validateTopics(key+".topics", c.Topics); err != nil {
		return err
	}
	if err := validateTopics(key+".produce_topics", c.ProduceTopics); err != nil {
		return err
	}
	if err := validateTopics(key+".groups", c.Groups); err != nil {
		return err
	}
	if c.TLS != nil {
		if err := c.TLS.validate(key + ".tls"); err != nil {
			return err
		}
	}
	if c.SASL != nil {
		if err := c.SASL.validate(key + ".sasl"); err != nil {
			return err
		}
	}
	return nil
}

func (t *TLS) validate(key string) error {
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "") {
		return fmt.Errorf("config: %s.enabled: must be true when other tls keys are set", key)
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("config: %s.cert_file: cert_file and key_file must be given together", key)
	}
	if t.Enabled {
		if _, err := t.LoadFiles(); err != nil {
			return fmt.Errorf("config: %s.%w", key, err)
		}
	}
	return nil
}

// TLSFiles are the parsed contents of a TLS section's files.
type TLSFiles struct {
	// RootCAs holds the certificates of ca_file; nil means the system roots.
	RootCAs *x509.CertPool
	// Certificate is the client certificate of cert_file and key_file; nil
	// when none is configured.
	Certificate *tls.Certificate
}

// LoadFiles reads and parses ca_file, cert_file and key_file as they are now
// on disk, so that rotated files take effect on the next call. Errors start
// with the offending key ("ca_file: ...") and never quote key material.
func (t *TLS) LoadFiles() (*TLSFiles, error) {
	var f TLSFiles
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		f.RootCAs = x509.NewCertPool()
		if !f.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file: %s: no PEM certificate found", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file: %s and key_file %s: %w", t.CertFile, t.KeyFile, err)
		}
		f.Certificate = &cert
	}
	return &f, nil
}

func (s *SASL) validate(key string) error {
	switch s.Mechanism {
	case MechanismPlain, MechanismScramSHA256, MechanismScramSHA512:
		if err := s.SASLCloud.absent(key); err != nil {
			return err
		}
	case MechanismOAuthBearer, MechanismAWSMSKIAM:
		return s.validateCloud(key)
	case "":
		return fmt.Errorf("config: %s.mechanism: required (%s)", key, mechanismNames)
	default:
		return fmt.Errorf("config: %s.mechanism: %q is not %s", key, s.Mechanism, mechanismNames)
	}
	if s.Username == "" {
		return fmt.Errorf("config: %s.username: required", key)
	}
	sources := 0
	for _, set := range []bool{s.Password != "", s.PasswordFile != "", s.PasswordEnv != "", s.PasswordSecret != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return fmt.Errorf("config: %s.password: exactly one of password, password_file, password_env, password_secret is required", key)
	}
	return nil
}

func validateTopics(key string, topics []string) error {
	for i, t := range topics {
		if t == "" {
			return fmt.Errorf("config: %s[%d]: empty topic pattern", key, i)
		}
		if _, err := path.Match(t, ""); err != nil {
			return fmt.Errorf("config: %s[%d]: bad pattern %q", key, i, t)
		}
	}
	return nil
}

func defaultDuration(key string, d *Duration, def time.Duration) error {
	if *d == 0 {
		*d = Duration(def)
	}
	if *d < 0 {
		return fmt.Errorf("config: %s: must not be negative", key)
	}
	return nil
}

func defaultCount(key string, n *int, def int) error {
	if *n == 0 {
		*n = def
	}
	if *n < 0 {
		return fmt.Errorf("config: %s: must be positive", key)
	}
	return nil
}

func validHostPort(s string) bool {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return false
	}
	for _, c := range s[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Duration is a time.Duration written as a Go duration string ("60s",
// "1m30s") or a number of seconds.
type Duration time.Duration

var durationType = reflect.TypeFor[Duration]()

// Duration returns d as a time.Duration.
func (d Duration) Duration() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return &json.UnmarshalTypeError{Value: fmt.Sprintf("%q", s), Type: durationType}
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return &json.UnmarshalTypeError{Value: string(b), Type: durationType}
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// Secret is a string that never prints: fmt, logs and JSON show it redacted.
type Secret string

// String redacts the secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts the secret for %#v.
func (s Secret) GoString() string { return s.String() }

// MarshalJSON redacts the secret.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// UnmarshalJSON reads the secret from a JSON string.
func (s *Secret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return errors.New("expected a string")
	}
	*s = Secret(v)
	return nil
}

// Reveal returns the secret's value, for handing to an authenticator only.
func (s Secret) Reveal() string { return string(s) }

// ResolvePassword returns a copy of s whose Password holds the password from
// its configured source: inline, password_file, password_env, or the Envoy
// generic secret password_secret read through lookup (nil where there is no
// secret store). Errors name the key, never the value.
func (s *SASL) ResolvePassword(lookup func(name string) (string, bool)) (*SASL, error) {
	if s.Mechanism == MechanismOAuthBearer || s.Mechanism == MechanismAWSMSKIAM {
		return s.resolveCloud(lookup)
	}
	r := *s
	switch {
	case s.Password != "":
	case s.PasswordFile != "":
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("sasl.password_file: %w", err)
		}
		r.Password = Secret(strings.TrimRight(string(b), "\r\n"))
	case s.PasswordEnv != "":
		v, ok := os.LookupEnv(s.PasswordEnv)
		if !ok {
			return nil, fmt.Errorf("sasl.password_env: environment variable %s is not set", s.PasswordEnv)
		}
		r.Password = Secret(v)
	case s.PasswordSecret != "":
		if lookup == nil {
			return nil, fmt.Errorf("sasl.password_secret: secret %q needs Envoy's secret store; use password_file or password_env here", s.PasswordSecret)
		}
		v, ok := lookup(s.PasswordSecret)
		if !ok {
			return nil, fmt.Errorf("sasl.password_secret: secret %q not found", s.PasswordSecret)
		}
		r.Password = Secret(v)
	}
	if r.Password == "" {
		return nil, errors.New("sasl.password: empty password")
	}
	return &r, nil
}

// WithPassword returns a copy of c whose SASL password is resolved (see
// SASL.ResolvePassword); c is returned as is when it has no SASL.
func (c *KafkaCluster) WithPassword(lookup func(name string) (string, bool)) (*KafkaCluster, error) {
	if c.SASL == nil {
		return c, nil
	}
	s, err := c.SASL.ResolvePassword(lookup)
	if err != nil {
		return nil, err
	}
	r := *c
	r.SASL = s
	return &r, nil
}
