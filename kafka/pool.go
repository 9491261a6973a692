// Package kafka runs the pub-sub protocol's Kafka commands with franz-go:
// list offset, fetch, subscribe and unsubscribe, produce, commit, committed,
// and group subscriptions (a subscribe that names a consumer group). Sessions
// share one franz-go client (and one producer) per distinct cluster
// configuration, taken from a Pool; Register binds the command handlers of
// one session to a shared client and to the Policy that says what the
// session may do, which every command checks before Kafka is asked.
//
// Files by layer: handlers.go is the session glue (commands to calls),
// read.go the cache-first read path, broker.go the requests to the brokers,
// messages.go the conversion of records to protocol messages; each further
// command has a file of its own (subscribe.go, group.go, produce.go,
// commit.go).
package kafka

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/metrics"
)

// idleClientTimeout is how long a client nobody uses stays open before it is
// closed, so that sessions that come and go reuse its broker connections.
const idleClientTimeout = 2 * time.Minute

// PoolOption configures a Pool.
type PoolOption func(*Pool)

// ClientOptions adds franz-go options to every client the Pool creates
// (e.g. hooks for metrics or tests).
func ClientOptions(opts ...kgo.Opt) PoolOption {
	return func(p *Pool) { p.extra = append(p.extra, opts...) }
}

// DefaultMaxBatchBytes is the default of MaxBatchBytes.
const DefaultMaxBatchBytes = 16 << 20

// MaxBatchBytes bounds the bytes one record batch may decompress to, in
// every read of the pool's clients (fetches, subscriptions, group members).
// A batch that would expand beyond it is refused with the cause
// ErrBatchTooLarge instead of being decoded, so that a small compressed
// batch cannot make the gateway allocate without bound. Default
// DefaultMaxBatchBytes.
func MaxBatchBytes(n int) PoolOption {
	return func(p *Pool) { p.maxBatchBytes = n }
}

// Logger sets the logger of the pool's clients. Default slog.Default().
func Logger(l *slog.Logger) PoolOption {
	return func(p *Pool) { p.log = l }
}

// Pool shares franz-go clients between sessions: one client per distinct
// cluster configuration (brokers, TLS, SASL credentials and client tuning).
// It is safe for concurrent use.
type Pool struct {
	extra         []kgo.Opt
	maxBatchBytes int
	log           *slog.Logger
	metrics       metrics.Kafka
	mu            sync.Mutex
	clients       map[[32]byte]*Cluster
	closed        bool
}

// NewPool returns an empty Pool.
func NewPool(opts ...PoolOption) *Pool {
	p := &Pool{log: slog.Default(), metrics: metrics.Nop{}, clients: make(map[[32]byte]*Cluster), maxBatchBytes: DefaultMaxBatchBytes}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Cluster is a shared client for one cluster configuration. Each Acquire
// must be paired with one Release.
type Cluster struct {
	pool  *Pool
	key   [32]byte
	cfg   config.KafkaCluster
	cl    *kgo.Client
	setup setupWatch
	refs  int
	timer *time.Timer
	// opts are the franz-go options of the cluster's clients.
	opts []kgo.Opt
	// decompressor decodes the batches of the cluster's own fetches, with
	// the clients' bound (MaxBatchBytes).
	decompressor kgo.Decompressor
	// readers are the shared partition readers of subscriptions.
	readers readerSet
	// cache holds the decoded records every session of the cluster reads.
	cache *recordCache
	// fetching runs one broker fetch per partition and offset at a time.
	fetching fetchGroup
	// checks share the checks that cached records are still in Kafka.
	checks cacheChecks
	// readAheads holds a token per broker answer decoded in the background
	// (at most readAheadSlots).
	readAheads chan struct{}
	// turns share the brokers between sessions.
	turns brokerTurns
	// pushes are the recent subscription pushes, encoded once.
	pushes encodedPushes
	// prod is the producer of the cluster's sessions, made on first use
	// (producer); producerClosed is set when the cluster closes.
	producerMu     sync.Mutex
	prod           *kgo.Client
	producerClosed bool
}

// Acquire returns the shared client for c, creating it on first use. The
// SASL password must already be resolved into c.SASL.Password.
func (p *Pool) Acquire(c *config.KafkaCluster) (*Cluster, error) {
	key := fingerprint(c)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, fmt.Errorf("kafka: pool closed")
	}
	if k := p.clients[key]; k != nil {
		k.refs++
		if k.timer != nil {
			k.timer.Stop()
			k.timer = nil
		}
		return k, nil
	}
	k, err := newCluster(p, key, c)
	if err != nil {
		return nil, err
	}
	k.refs = 1
	p.clients[key] = k
	return k, nil
}

// Release gives back a client taken with Acquire. The last release closes
// it after idleClientTimeout unless it is acquired again.
func (k *Cluster) Release() {
	p := k.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	k.refs--
	if k.refs > 0 || p.closed {
		return
	}
	k.timer = time.AfterFunc(idleClientTimeout, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if k.refs == 0 && p.clients[k.key] == k {
			delete(p.clients, k.key)
			go func() {
				defer p.recoverPanic("closing an idle client")
				k.close()
			}()
		}
	})
}

// recoverPanic logs a panic of a goroutine the pool started; inside Envoy an
// unrecovered panic would end the proxy.
func (p *Pool) recoverPanic(what string) {
	if r := recover(); r != nil {
		p.log.Error("kafka: panic "+what, "panic", r, "stack", string(debug.Stack()))
	}
}

// CachedBytes returns the bytes the cluster's record cache holds, as
// counted against cache_bytes (keys, values, headers and a fixed cost per
// record and per run of records).
func (k *Cluster) CachedBytes() int { return k.cache.Bytes() }

// Config returns the cluster configuration the client was built from.
func (k *Cluster) Config() *config.KafkaCluster { return &k.cfg }

// Close closes every client of the pool; later Acquires fail.
func (p *Pool) Close() {
	p.mu.Lock()
	clients := p.clients
	p.clients = nil
	p.closed = true
	p.mu.Unlock()
	for _, k := range clients {
		if k.timer != nil {
			k.timer.Stop()
		}
		k.close()
	}
}

// Clients returns the number of open clients.
func (p *Pool) Clients() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.clients)
}

func newCluster(p *Pool, key [32]byte, c *config.KafkaCluster) (*Cluster, error) {
	k := &Cluster{pool: p, key: key, cfg: *c, cache: newRecordCache(c.CacheBytes, c.WindowBytes), readAheads: make(chan struct{}, readAheadSlots)}
	warnInsecure(p.log, c)
	if c.SASL != nil {
		// The client keeps the password inside its authenticator; the
		// copy that Config returns does not hold it.
		s := *c.SASL
		s.Password = ""
		s.ClientSecret = ""
		k.cfg.SASL = &s
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID("envoy-pubsub"),
		kgo.DialTimeout(c.RequestTimeout.Duration()),
		kgo.RetryTimeout(c.RequestTimeout.Duration()),
		kgo.RequestRetries(3),
		kgo.RetryBackoffFn(func(tries int) time.Duration { return time.Duration(tries) * 50 * time.Millisecond }),
		kgo.MetadataMinAge(time.Second),
		kgo.WithLogger(kgoLogger{p.log}),
		kgo.MaxDecompressBatchBytes(p.maxBatchBytes),
	}
	if c.TLS != nil && c.TLS.Enabled {
		d, err := newTLSDialer(c.TLS, c.RequestTimeout.Duration(), p.log)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.Dialer(d.DialContext))
	}
	if c.SASL != nil {
		m, err := saslMechanism(c.SASL)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	opts = append(opts, p.extra...)
	k.opts = opts
	cl, err := kgo.NewClient(append(opts, kgo.WithHooks(&k.setup))...)
	if err != nil {
		return nil, fmt.Errorf("kafka: %w", err)
	}
	k.cl = cl
	// franz-go builds its default decompressor with the bound; the
	// cluster's own fetches decode with that one.
	d, ok := cl.OptValue(kgo.WithDecompressor).(kgo.Decompressor)
	if !ok {
		cl.Close()
		return nil, fmt.Errorf("kafka: franz-go has no bounded decompressor")
	}
	k.decompressor = d
	return k, nil
}

// close closes the clients and the shared readers' consumer.
func (k *Cluster) close() {
	k.closeProducer()
	k.readers.close()
	k.cl.Close()
}

// fingerprint identifies a cluster configuration, secrets included, without
// keeping them in memory in clear.
func fingerprint(c *config.KafkaCluster) [32]byte {
	h := sha256.New()
	field := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	for _, b := range c.Brokers {
		field(b)
	}
	field("|")
	if t := c.TLS; t != nil && t.Enabled {
		field(fmt.Sprint(t.VerifyEnabled()))
		field(t.CAFile)
		field(t.CertFile)
		field(t.KeyFile)
		field(t.ServerName)
	}
	field("|")
	if s := c.SASL; s != nil {
		field(s.Mechanism)
		field(s.Username)
		field(s.Password.Reveal())
		field(s.TokenFile)
		field(s.TokenEndpoint)
		field(s.ClientID)
		field(s.ClientSecret.Reveal())
		field(s.Scope)
	}
	field("|")
	// Fetch limits live in the shared client's configuration, so clusters
	// that differ in them must not share one.
	field(c.RequestTimeout.Duration().String())
	field(c.FetchMaxWait.Duration().String())
	field(fmt.Sprint(c.FetchMaxBytes))
	field(fmt.Sprint(c.WindowBytes))
	field(fmt.Sprint(c.CacheBytes))
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// kgoLogger sends franz-go's logs to slog, at the level slog is enabled for
// (franz-go's info logs only at debug: they are per connection).
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel {
	if k.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelWarn
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error("kafka: "+msg, keyvals...)
	case kgo.LogLevelWarn:
		k.l.Warn("kafka: "+msg, keyvals...)
	default:
		k.l.Debug("kafka: "+msg, keyvals...)
	}
}
