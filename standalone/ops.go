package standalone

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/metrics/prom"
	"github.com/envoy-pubsub/gateway/server"
)

// DefaultReadyTimeout bounds how long /readyz waits for each cluster's
// brokers.
const DefaultReadyTimeout = 2 * time.Second

// opsServer serves /metrics, /healthz and /readyz on a listener of its own,
// apart from the public WebSocket port.
type opsServer struct {
	http *http.Server
	addr string
}

// readiness answers /readyz: ready when the session server accepts
// sessions and a broker of every configured cluster answers within the
// timeout.
type readiness struct {
	sessions *server.Server
	pool     *kafka.Pool
	clusters *resolver
	timeout  time.Duration
}

// check returns nil when ready, else every reason it is not, one per line.
func (r *readiness) check(ctx context.Context) error {
	if err := r.sessions.Accepting(); err != nil {
		return fmt.Errorf("sessions: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	names := r.clusters.names()
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			defer func() {
				if p := recover(); p != nil {
					errs[i] = fmt.Errorf("cluster %s: internal error", name)
				}
			}()
			k, err := r.pool.Acquire(r.clusters.clusters[name])
			if err == nil {
				err = k.Ping(ctx)
				k.Release()
			}
			if err != nil {
				errs[i] = fmt.Errorf("cluster %s: %w", name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ServeHTTP answers /readyz with 200 "ready" or 503 and the reasons.
func (r *readiness) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := r.check(req.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, err.Error()+"\n")
		return
	}
	io.WriteString(w, "ready\n")
}

// startOps listens on addr and serves the metrics and health endpoints.
func startOps(addr string, m *prom.Metrics, ready *readiness, log *slog.Logger) (*opsServer, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /readyz", ready)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	o := &opsServer{http: server.NewHTTPServer(mux, log), addr: ln.Addr().String()}
	go func() {
		defer func() {
			if p := recover(); p != nil {
				log.Error("standalone: metrics listener panic", "panic", p, "stack", string(debug.Stack()))
			}
		}()
		if err := o.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("standalone: metrics listener stopped", "err", err)
		}
	}()
	return o, nil
}
