package standalone

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/kafka"
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
}

// Start serves doc on addr (HOST:PORT; port 0 picks a free one) until
// Shutdown. It fails when a cluster's SASL password cannot be read or addr
// cannot be listened on.
func Start(doc *config.Document, addr string, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	pool := kafka.NewPool(append([]kafka.PoolOption{kafka.Logger(log)}, opts.PoolOptions...)...)
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
	sessions := server.New(resolver, server.OptionsFrom(doc, log))
	var handler http.Handler = sessions
	if opts.Front != nil {
		if handler, err = opts.Front(sessions); err != nil {
			return fail(err)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fail(err)
	}
	s := &Server{
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
	s.resolver.close()
	s.pool.Close()
	return err
}
