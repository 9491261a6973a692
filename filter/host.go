package filter

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/pubsub"
	"github.com/envoy-pubsub/gateway/server"
)

// drainTimeout bounds how long destroying the last config waits for its
// sessions to take their 1001 close frame and end.
const drainTimeout = 2 * time.Second

// staleProbeTimeout is how long a leftover socket file may take to answer
// before it is considered stale.
const staleProbeTimeout = 500 * time.Millisecond

// The session servers of this process, by listener path, and what they
// share: one Kafka client pool and one logger.
var (
	hostsMu sync.Mutex
	hosts   = make(map[string]*sessionHost)

	processOnce sync.Once
	processLog  *slog.Logger
	processPool *kafka.Pool
)

func processShared() (*slog.Logger, *kafka.Pool) {
	processOnce.Do(func() {
		processLog = envoyLogger()
		processPool = kafka.NewPool(kafka.Logger(processLog))
	})
	return processLog, processPool
}

// sessionHost is the in-process session server on one unix socket. It is
// started by the first filter-level config that names the socket, takes the
// newest config's limits and stats on every later Parse, and drains when the
// last such config is destroyed. Upgrades are resolved by redeeming the
// ticket the filter issued; the session then runs with the configuration
// snapshot the ticket holds.
type sessionHost struct {
	path    string
	log     *slog.Logger
	pool    *kafka.Pool
	tickets *ticketStore
	stats   observer
	http    *http.Server
	served  chan struct{} // closed when the accept loop returns

	holders []holder // the live filter-level configs, newest last; guarded by hostsMu

	mu       sync.Mutex
	current  generation
	retired  []*server.Server // earlier generations, drained at the end
	draining bool
	inflight sync.WaitGroup // requests being handed to a generation; Add only under mu while !draining
}

// holder is a live filter-level config using a session server.
type holder struct {
	doc     *config.Document
	metrics *metrics
}

// generation is a session server built for one set of session limits.
// Sessions stay with the generation that accepted them.
type generation struct {
	limits config.Session
	srv    *server.Server
}

// acquireHost returns the session server of doc.Listener, starting it if
// this is the first config naming it, and makes it use doc's limits and m's
// stats from now on.
func acquireHost(doc *config.Document, m *metrics) (*sessionHost, error) {
	hostsMu.Lock()
	defer hostsMu.Unlock()
	h := hosts[doc.Listener]
	if h == nil {
		var err error
		if h, err = startHost(doc.Listener); err != nil {
			return nil, err
		}
		hosts[doc.Listener] = h
	}
	h.holders = append(h.holders, holder{doc: doc, metrics: m})
	h.update(doc, m)
	return h, nil
}

// releaseHost drops the hold of the config whose stats are m; the limits
// and stats of the newest remaining config take over, and the last release
// drains h.
func releaseHost(h *sessionHost, m *metrics) {
	hostsMu.Lock()
	defer hostsMu.Unlock()
	h.holders = slices.DeleteFunc(h.holders, func(x holder) bool { return x.metrics == m })
	if n := len(h.holders); n > 0 {
		newest := h.holders[n-1]
		h.update(newest.doc, newest.metrics)
		return
	}
	delete(hosts, h.path)
	h.drain(drainTimeout)
}

func startHost(path string) (*sessionHost, error) {
	if err := prepareSocket(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listener: %w", err)
	}
	if !isAbstract(path) {
		if err := os.Chmod(path, 0o600); err != nil {
			ln.Close()
			return nil, fmt.Errorf("listener: %w", err)
		}
	}
	log, pool := processShared()
	h := &sessionHost{
		path:    path,
		log:     log.With("listener", path),
		pool:    pool,
		tickets: newTicketStore(time.Now),
		served:  make(chan struct{}),
	}
	h.http = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	h.goSafe("accept loop", func() { h.serve(ln) })
	h.log.Info("pubsub: session server listening")
	return h, nil
}

// goSafe runs fn in a goroutine that recovers a panic: inside Envoy an
// unrecovered panic kills the proxy.
func (h *sessionHost) goSafe(what string, fn func()) {
	go func() {
		defer func() {
			if p := recover(); p != nil {
				h.log.Error("pubsub: panic in session server "+what, "panic", p, "stack", string(debug.Stack()))
			}
		}()
		fn()
	}()
}

func (h *sessionHost) serve(ln net.Listener) {
	defer close(h.served)
	if err := h.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		h.log.Error("pubsub: session server stopped", "err", err)
	}
}

// update swaps in doc's limits (as a new generation when they changed) and
// m's stats. Sessions already running keep their generation.
func (h *sessionHost) update(doc *config.Document, m *metrics) {
	h.stats.use(m)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.current.srv != nil && h.current.limits == doc.Session {
		return
	}
	opts := server.OptionsFrom(doc, h.log)
	opts.Observer = &h.stats
	if h.current.srv != nil {
		h.retired = append(h.retired, h.current.srv)
	}
	h.current = generation{limits: doc.Session, srv: server.New(h, opts)}
}

// ServeHTTP hands a request on the socket to the current generation. The
// drain waits for these hand-offs, so that every session they start is one
// the drain knows of.
func (h *sessionHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	if h.draining {
		h.mu.Unlock()
		http.Error(w, "session server is shutting down", http.StatusServiceUnavailable)
		return
	}
	srv := h.current.srv
	h.inflight.Add(1)
	h.mu.Unlock()
	defer h.inflight.Done()
	srv.ServeHTTP(w, r)
}

// Resolve redeems the request's ticket and binds the session to the shared
// Kafka client of the ticket's cluster snapshot.
func (h *sessionHost) Resolve(r *http.Request) (server.Route, error) {
	g, err := h.tickets.redeem(r.Header.Get(TicketHeader))
	if err != nil {
		h.stats.ticketRejected()
		h.log.Warn("pubsub: upgrade refused", "reason", err.Error(), "remote", r.RemoteAddr)
		return server.Route{}, &server.Error{Status: http.StatusUnauthorized, Message: "missing, invalid, used or expired pub-sub ticket"}
	}
	k, err := h.pool.Acquire(g.kafka)
	if err != nil {
		h.log.Error("pubsub: kafka client", "cluster", g.cluster, "err", err)
		return server.Route{}, &server.Error{Status: http.StatusBadGateway, Message: "kafka cluster unavailable"}
	}
	mux := pubsub.NewMux()
	kafka.Register(mux, k, kafka.NewPolicy(g.kafka, g.routes...))
	return server.Route{
		Handler: mux,
		Release: k.Release,
		Attrs:   []slog.Attr{slog.String("cluster", g.cluster)},
	}, nil
}

// drain stops accepting, sends every session 1001 and waits up to timeout
// for them to end. The socket file goes with the listener.
func (h *sessionHost) drain(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	h.mu.Lock()
	h.draining = true
	servers := append(h.retired, h.current.srv)
	h.mu.Unlock()
	var errs []error
	errs = append(errs, h.http.Shutdown(ctx))
	handedOff := make(chan struct{})
	h.goSafe("drain", func() {
		defer close(handedOff)
		h.inflight.Wait()
	})
	select {
	case <-handedOff:
	case <-ctx.Done():
		errs = append(errs, ctx.Err())
	}
	for _, srv := range servers {
		errs = append(errs, srv.Shutdown(ctx))
	}
	<-h.served
	if err := errors.Join(errs...); err != nil {
		h.log.Warn("pubsub: session server drained with errors", "err", err)
		return
	}
	h.log.Info("pubsub: session server drained")
}

// isAbstract reports whether path names a Linux abstract socket (@name),
// which has no file.
func isAbstract(path string) bool { return strings.HasPrefix(path, "@") }

// prepareSocket makes path bindable: it creates the directory and removes a
// socket file left by a process that is gone. A file that is not a socket,
// or a socket something still answers on, is an error.
func prepareSocket(path string) error {
	if isAbstract(path) {
		return nil
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return fmt.Errorf("listener: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("listener: %s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, staleProbeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("listener: %s is in use by another process (give each Envoy its own socket)", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("listener: removing stale socket: %w", err)
	}
	return nil
}
