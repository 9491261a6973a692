package standalone

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/metrics/prom"
	"github.com/envoy-pubsub/gateway/server"
)

// Options configure a Server. The zero value serves the pub-sub endpoints
// alone, logging to slog.Default().
type Options struct {
	// Logger receives the server's and its Kafka clients' events.
	Logger *slog.Logger
	// PoolOptions are added to the options of the server's Kafka client
	// pool, after kafka.Logger(Logger).
	PoolOptions []kafka.PoolOption
	// Front, if set, wraps the pub-sub handler, for example with web.Handler
	// to serve a page beside the endpoints; it must pass WebSocket upgrades
	// on.
	Front func(pubsub http.Handler) (http.Handler, error)
	// MetricsListen, if set, is the HOST:PORT (port 0 picks a free one) of
	// a second listener that serves the Prometheus metrics at /metrics,
	// /healthz (the process is alive) and /readyz (see ReadyTimeout). Empty
	// serves none of them and records no metrics.
	MetricsListen string
	// MetricsOptional makes a MetricsListen address that cannot be listened
	// on (another process has it) a logged warning instead of an error: the
	// sessions are served, without /metrics, /healthz and /readyz.
	MetricsOptional bool
	// ReadyTimeout bounds how long /readyz waits for a broker of each
	// cluster to answer. Default DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// Server is the pub-sub server without Envoy, started and stopped as one
// thing: it serves cluster NAME of a configuration document at
// ws://ADDR/NAME on its own listener, with its own Kafka client pool.
type Server struct {
	sessions *server.Server
	pool     *kafka.Pool
	http     *http.Server
	addr     string
	failed   chan error
	resolver *resolver
	ops      *opsServer // nil without MetricsListen
}

// Start serves doc on addr (HOST:PORT; port 0 picks a free one) until
// Shutdown. It fails when a cluster's SASL password cannot be read or addr
// cannot be listened on.
func Start(doc *config.Document, addr string, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	poolOpts := []kafka.PoolOption{kafka.Logger(log)}
	sessionOpts := server.OptionsFrom(doc, log)
	var m *prom.Metrics
	if opts.MetricsListen != "" {
		m = prom.New()
		poolOpts = append(poolOpts, kafka.Metrics(m), kafka.ClientOptions(kgo.WithHooks(m.KafkaHooks())))
		sessionOpts.Metrics = m
		if sessionOpts.Session.Memory != nil {
			m.WatchBudget(sessionOpts.Session.Memory)
		}
	}
	pool := kafka.NewPool(append(poolOpts, opts.PoolOptions...)...)
	resolver, err := newResolver(doc, pool, log)
	if err != nil {
		pool.Close()
		return nil, err
	}
	fail := func(err error) (*Server, error) {
		resolver.close()
		pool.Close()
		return nil, err
	}
	sessions := server.New(resolver, sessionOpts)
	var handler http.Handler = sessions
	if opts.Front != nil {
		if handler, err = opts.Front(sessions); err != nil {
			return fail(err)
		}
	}
	var ops *opsServer
	if m != nil {
		m.WatchPool(pool)
		timeout := opts.ReadyTimeout
		if timeout <= 0 {
			timeout = DefaultReadyTimeout
		}
		ready := &readiness{sessions: sessions, pool: pool, clusters: resolver, timeout: timeout}
		if ops, err = startOps(opts.MetricsListen, m, ready, log); err != nil {
			if !opts.MetricsOptional {
				return fail(err)
			}
			log.Warn("standalone: serving without metrics and health endpoints", "err", err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if ops != nil {
			ops.http.Close()
		}
		return fail(err)
	}
	s := &Server{
		ops:      ops,
		sessions: sessions,
		pool:     pool,
		http:     server.NewHTTPServer(handler, log),
		addr:     ln.Addr().String(),
		failed:   make(chan error, 1),
		resolver: resolver,
	}
	go s.serve(ln, log)
	return s, nil
}

// serve runs the accept loop; an error that stops it before Shutdown goes
// to Failed.
func (s *Server) serve(ln net.Listener, log *slog.Logger) {
	defer func() {
		if p := recover(); p != nil {
			log.Error("standalone: accept loop panic", "panic", p, "stack", string(debug.Stack()))
			s.failed <- errors.New("standalone: accept loop panic")
		}
	}()
	if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		s.failed <- err
	}
}

// Addr returns the HOST:PORT the server listens on.
func (s *Server) Addr() string { return s.addr }

// URL returns the WebSocket URL of cluster name.
func (s *Server) URL(name string) string { return "ws://" + s.addr + "/" + name }

// MetricsAddr returns the HOST:PORT of the metrics and health listener, or
// "" without one.
func (s *Server) MetricsAddr() string {
	if s.ops == nil {
		return ""
	}
	return s.ops.addr
}

// Sessions returns the server that runs the sessions, for their counts.
func (s *Server) Sessions() *server.Server { return s.sessions }

// Pool returns the Kafka client pool the sessions share.
func (s *Server) Pool() *kafka.Pool { return s.pool }

// Failed receives the error that stopped the listener, if it stops before
// Shutdown.
func (s *Server) Failed() <-chan error { return s.failed }

// Shutdown sends every session a 1001 close frame and waits for them, then
// for the other requests (the page's), until ctx expires; then it closes the
// Kafka clients.
func (s *Server) Shutdown(ctx context.Context) error {
	err := errors.Join(s.sessions.Shutdown(ctx), s.http.Shutdown(ctx))
	if s.ops != nil {
		err = errors.Join(err, s.ops.http.Shutdown(ctx))
	}
	s.resolver.close()
	s.pool.Close()
	return err
}
