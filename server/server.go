// Package server accepts WebSocket upgrades over HTTP and runs a pub-sub
// session for each: it is the front of both the standalone server (TCP) and
// the in-process session server that Envoy reaches on a unix socket. Which
// session an upgrade starts is decided by a Resolver; KafkaRoute binds it to
// a Kafka cluster.
package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/metrics"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// Route is what a resolved upgrade is served with.
type Route struct {
	// Handler answers the session's commands.
	Handler pubsub.Handler
	// Release, if set, is called once when the session ends.
	Release func()
	// Attrs are logged with the session's events (never secrets).
	Attrs []slog.Attr
	// Subject is the verified identity's subject, logged when the session
	// ends; empty when the session has no identity. Never a token.
	Subject string
	// Deadline, if set, ends the session when it passes (its identity's
	// token expiry).
	Deadline *pubsub.Deadline
	// Context, if set, ends the session with a 1001 close frame when it is
	// canceled, as Shutdown does for every session.
	Context context.Context
}

// WithIdentity returns r for a session of identity id: cmd_auth goes to
// id, every other command to r's handler, and the session ends at the
// expiry of id's token.
func (r Route) WithIdentity(id *identity.Session) Route {
	next := r.Handler
	r.Handler = pubsub.HandlerFunc(func(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
		if req.Command == pubsub.CmdAuth {
			return id.ServePubSub(ctx, req)
		}
		return next.ServePubSub(ctx, req)
	})
	r.Deadline = id.Deadline()
	r.Subject = id.Claims().Subject()
	return r
}

// Resolver decides which session an upgrade request starts. It is called
// before the upgrade and returns a *Error to refuse it with a status code.
type Resolver interface {
	Resolve(r *http.Request) (Route, error)
}

// EndpointChecker is implemented by resolvers that can tell, without
// starting anything, whether a request names an endpoint: plain requests to
// unknown paths then get 404 rather than 426.
type EndpointChecker interface {
	CheckEndpoint(r *http.Request) error
}

// Error refuses an HTTP request with a status code and a message.
type Error struct {
	Status  int
	Message string
	// Reason names the refusal in metrics: a short fixed word such as
	// "ticket" (never built from the request). Empty means the status's
	// name, e.g. "unauthorized".
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Message) }

// Observer receives the server's events, for metrics. Any method may be
// called from many goroutines at once.
type Observer interface {
	SessionStarted()
	SessionEnded()
	Refused(status int)
	Command(command string, err error)
}

// Options configure a Server.
type Options struct {
	// Session are the limits of every session.
	Session pubsub.Options
	// MaxSessions bounds concurrent sessions; upgrades beyond it get 503.
	// Default 10000.
	MaxSessions int
	// Logger receives server events; default slog.Default().
	Logger *slog.Logger
	// Observer, if set, receives events for metrics.
	Observer Observer
	// KeylessUpgrade accepts WebSocket upgrades without Sec-WebSocket-Key,
	// the form Envoy forwards for an HTTP/2 WebSocket (see keyless.go).
	// Only for a listener that nothing but Envoy reaches; default false,
	// and a keyless upgrade then gets 400.
	KeylessUpgrade bool
	// Metrics receives the sessions' events; default metrics.Nop.
	Metrics Sink
}

// Sink is what the server reports its sessions' events to.
type Sink interface {
	metrics.Server
	metrics.Engine
}

// Server serves pub-sub sessions over WebSocket.
type Server struct {
	resolver Resolver
	opts     Options
	log      *slog.Logger
	active   atomic.Int64
	ctx      context.Context
	cancel   context.CancelFunc
	sessions sync.WaitGroup
	mu       sync.Mutex
	https    []*http.Server
	loggers  routeLoggers
}

// New returns a Server that starts the sessions resolver picks.
func New(resolver Resolver, opts Options) *Server {
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = config.DefaultMaxSessions
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Session.Logger == nil {
		opts.Session.Logger = opts.Logger
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.Nop{}
	}
	if opts.Session.Metrics == nil {
		opts.Session.Metrics = opts.Metrics
	}
	opts.Session.OnCommand = commandReporter(opts.Session.OnCommand, opts.Observer, opts.Metrics)
	s := &Server{resolver: resolver, opts: opts, log: opts.Logger}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// ActiveSessions returns the number of sessions being served.
func (s *Server) ActiveSessions() int { return int(s.active.Load()) }

// ReplyBytes returns the reply bytes all sessions hold under the process's
// memory budget (Options.Session.Memory), 0 without one.
func (s *Server) ReplyBytes() int {
	if s.opts.Session.Memory == nil {
		return 0
	}
	return s.opts.Session.Memory.Used()
}

// Serve accepts HTTP connections on ln until Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	hs := NewHTTPServer(s, s.log)
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	s.https = append(s.https, hs)
	s.mu.Unlock()
	return hs.Serve(ln)
}

// Shutdown stops accepting, sends every open session a 1001 close frame and
// waits for them to end or ctx to expire.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.cancel()
	hss := s.https
	s.mu.Unlock()
	var errs []error
	for _, hs := range hss {
		errs = append(errs, hs.Shutdown(ctx))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("server: panic waiting for sessions", "panic", p, "stack", string(debug.Stack()))
			}
		}()
		s.sessions.Wait()
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	return errors.Join(errs...)
}

// ServeHTTP resolves the request, checks that it is a WebSocket upgrade and
// that the session bound is not reached, upgrades and serves the session.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil && p != http.ErrAbortHandler {
			s.log.Error("server: panic serving request", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	if s.ctx.Err() != nil {
		s.refuse(w, &Error{Status: http.StatusServiceUnavailable, Message: "server is shutting down", Reason: "shutting_down"})
		return
	}
	if !IsUpgrade(r.Header) {
		// Unknown paths get 404, not 426.
		if c, ok := s.resolver.(EndpointChecker); ok {
			if err := c.CheckEndpoint(r); err != nil {
				s.refuse(w, err)
				return
			}
		}
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Connection", "Upgrade")
		s.refuse(w, &Error{Status: http.StatusUpgradeRequired, Message: "this endpoint speaks the pub-sub protocol over WebSocket: send an Upgrade: websocket request", Reason: "not_upgrade"})
		return
	}
	route, err := s.resolver.Resolve(r)
	if err != nil {
		s.refuse(w, err)
		return
	}
	release := route.Release
	if release == nil {
		release = func() {}
	}
	if s.active.Add(1) > int64(s.opts.MaxSessions) {
		s.active.Add(-1)
		release()
		s.refuse(w, &Error{Status: http.StatusServiceUnavailable, Message: "too many sessions", Reason: "too_many_sessions"})
		return
	}
	if mem := s.opts.Session.Memory; mem != nil && mem.Full() {
		s.active.Add(-1)
		release()
		s.refuse(w, &Error{Status: http.StatusServiceUnavailable, Message: "memory limit reached", Reason: "memory_limit"})
		return
	}
	conn, rw, err := s.upgrade(r, w)
	if err != nil {
		s.active.Add(-1)
		release()
		s.log.Info("server: handshake failed", "remote", r.RemoteAddr, "err", err)
		if s.opts.Observer != nil {
			s.opts.Observer.Refused(http.StatusBadRequest)
		}
		s.opts.Metrics.Refused(http.StatusBadRequest, "handshake")
		return // the handshake answered 400 itself.
	}
	if rw != nil && rw.Reader.Buffered() > 0 {
		conn = &prefixedConn{Conn: conn, prefix: rw.Reader}
	}
	// Shutdown waits for sessions; a session may only start before it does.
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		conn.Close()
		s.active.Add(-1)
		release()
		return
	}
	s.sessions.Add(1)
	s.mu.Unlock()
	if s.opts.Observer != nil {
		s.opts.Observer.SessionStarted()
	}
	s.opts.Metrics.SessionOpened()
	log := s.loggers.get(s.log, route.Attrs)
	log.Debug("server: session started", "remote", r.RemoteAddr)
	s.start(conn, route, release, log, sessionStart{remote: r.RemoteAddr, path: r.URL.Path, at: time.Now()})
}

// start serves one upgraded connection; the session's end runs its
// cleanup and logs the session's end. No goroutine waits for the session:
// an idle one holds none.
func (s *Server) start(conn net.Conn, route Route, release func(), log *slog.Logger, start sessionStart) {
	ss := &served{srv: s, subject: route.Subject, release: release, log: log, start: start,
		end: pubsub.End{Code: int(pubsub.CloseAbnormal)}}
	ctx := s.ctx
	if route.Context != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		stopAfter := context.AfterFunc(route.Context, cancel)
		ss.stopRoute = func() {
			stopAfter()
			cancel()
		}
	}
	opts := s.opts.Session
	opts.Logger = log
	opts.Deadline = route.Deadline
	opts.OnEnd = ss.recordEnd
	pubsub.Start(metrics.WithTally(ctx, &ss.tally), conn, route.Handler, opts, ss.ended)
}

// served is what the server keeps of a session it serves, for its end:
// one allocation rather than a closure and a variable each.
type served struct {
	srv     *Server
	subject string
	release func()
	log     *slog.Logger
	start   sessionStart
	end     pubsub.End
	tally   metrics.Tally
	// stopRoute, if the route has a context, stops following it.
	stopRoute func()
}

// recordEnd keeps how the session ended (its Options.OnEnd).
func (ss *served) recordEnd(e pubsub.End) { ss.end = e }

// ended cleans up after the session and logs its end.
func (ss *served) ended(error) {
	s := ss.srv
	if ss.stopRoute != nil {
		ss.stopRoute()
	}
	ss.release()
	s.active.Add(-1)
	if s.opts.Observer != nil {
		s.opts.Observer.SessionEnded()
	}
	s.opts.Metrics.SessionClosed(ss.end.Code)
	logSessionEnd(ss.log, ss.subject, ss.start, ss.end, &ss.tally)
	s.sessions.Done()
}

func (s *Server) refuse(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		s.log.Error("server: resolving upgrade failed", "err", err)
		e = &Error{Status: http.StatusInternalServerError, Message: "internal error"}
	}
	if s.opts.Observer != nil {
		s.opts.Observer.Refused(e.Status)
	}
	s.opts.Metrics.Refused(e.Status, e.reason())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(e.Status)
	io.WriteString(w, e.Message+"\n")
}

// NewHTTPServer returns the HTTP server every pub-sub listener runs h with:
// request headers must arrive within readHeaderTimeout, and the server's own
// errors go to log as warnings.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// readHeaderTimeout bounds how long a client may take to send its request
// headers (the upgrade request).
const readHeaderTimeout = 10 * time.Second

// IsUpgrade reports whether h asks for a WebSocket upgrade.
func IsUpgrade(h http.Header) bool {
	return slices.ContainsFunc(h.Values("Upgrade"), NamesWebSocket)
}

// NamesWebSocket reports whether the value of an Upgrade header lists the
// websocket protocol.
func NamesWebSocket(upgrade string) bool {
	for token := range strings.SplitSeq(upgrade, ",") {
		if strings.EqualFold(strings.TrimSpace(token), "websocket") {
			return true
		}
	}
	return false
}

// prefixedConn is a connection whose first bytes were already buffered by
// the HTTP server (a client that sent frames right after its handshake).
type prefixedConn struct {
	net.Conn
	prefix io.Reader
	done   bool
}

func (c *prefixedConn) Read(p []byte) (int, error) {
	if !c.done {
		if b, ok := c.prefix.(interface{ Buffered() int }); ok && b.Buffered() > 0 {
			return c.prefix.Read(p)
		}
		c.done = true
		c.prefix = nil
	}
	return c.Conn.Read(p)
}

// OptionsFrom returns the server options that doc's session limits ask
// for, with a memory budget of limits.max_memory_bytes shared by the
// server's sessions.
func OptionsFrom(doc *config.Document, log *slog.Logger) Options {
	s := doc.Session
	return Options{
		MaxSessions: s.MaxSessions,
		Logger:      log,
		Session: pubsub.Options{
			MaxFrameBytes:    s.MaxFrameBytes,
			IdleTimeout:      s.IdleTimeout.Duration(),
			WriteTimeout:     s.WriteTimeout.Duration(),
			MaxInFlight:      s.MaxInFlight,
			PushQueueBytes:   s.PushQueueBytes,
			PushStallTimeout: s.PushStallTimeout.Duration(),
			MaxPendingBytes:  s.MaxPendingBytes,
			Memory:           pubsub.NewMemoryBudget(doc.Limits.MaxMemoryBytes),
			PingInterval:     s.PingInterval.Duration(),
			PongTimeout:      s.PongTimeout.Duration(),
			Logger:           log,
		},
	}
}

// KafkaRoute binds a session to the shared client of Kafka cluster c (named
// name in logs): its commands go to every Kafka handler, which check policy.
// A client that cannot be made refuses the upgrade with 502, logged to log.
func KafkaRoute(pool *kafka.Pool, name string, c *config.KafkaCluster, policy kafka.Policy, log *slog.Logger) (Route, error) {
	k, err := pool.Acquire(c)
	if err != nil {
		log.Error("pubsub: kafka client", "cluster", name, "err", err)
		return Route{}, &Error{Status: http.StatusBadGateway, Message: "kafka cluster unavailable", Reason: "cluster_unavailable"}
	}
	return Route{Handler: kafka.NewHandler(k, policy), Release: k.Release, Attrs: []slog.Attr{slog.String("cluster", name)}}, nil
}
