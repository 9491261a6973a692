// Package sessionhost runs the gateway's session server inside the Envoy
// process: one HTTP server per unix socket that answers the WebSocket
// upgrades Envoy's router forwards to a kafka-scheme cluster, admitting only
// those that carry a ticket the filter issued, and serving each as a pub-sub
// session with the configuration snapshot the ticket holds. It keeps
// sessions on the limits they started with when the configuration changes
// (generations), closes with 1001 the sessions of a configuration that a
// listener update replaced shortly before Envoy would cut them
// (session.drain_time), hands its socket path over to a second process (hot
// restart) and drains in the background. It knows nothing of Envoy's API:
// the filter feeds it configurations and stats, and tests run it alone.
package sessionhost

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/pubsub"
	"github.com/envoy-pubsub/gateway/server"
)

// drainTimeout bounds how long a drain waits for sessions to take their
// 1001 close frame and end.
const drainTimeout = 2 * time.Second

// maxDrainLead bounds DrainLead.
const maxDrainLead = 5 * time.Second

// DrainLead returns how long before the end of drainTime (a replaced
// configuration's session.drain_time, counted from the arrival of the
// configuration that replaced it) its sessions get close 1001: a tenth of
// drainTime, at most 5s. Envoy starts draining a listener once its
// replacement is built and warmed, so its own close comes later still.
func DrainLead(drainTime time.Duration) time.Duration {
	return min(drainTime/10, maxDrainLead)
}

// Why a host issues no ticket.
var (
	// ErrSuperseded: another process (a hot-restarted Envoy) took the
	// socket path over; upgrades routed there would not reach this host.
	ErrSuperseded = errors.New("the session socket was taken over by another process")
	// ErrDraining: the host's last configuration was destroyed.
	ErrDraining = errors.New("the session server is shutting down")
)

// Hosts are the session hosts of one process, by socket path, sharing one
// Kafka client pool and one logger. The filter keeps one per process.
//
// Nothing logs to log for a host once its last configuration is released
// (Envoy has destroyed it): the host's drain and its remaining sessions log
// warnings and errors to stderr instead, and so does the Kafka client pool
// while no host is held.
type Hosts struct {
	log      *slog.Logger
	detached slog.Handler // where released hosts log
	poolLog  logGate
	pool     *kafka.Pool
	// sink takes the detailed events of every session and of the pool.
	sink *forward

	mu     sync.Mutex
	byPath map[string]*Host
}

// NewHosts returns an empty set of hosts logging to log.
func NewHosts(log *slog.Logger) *Hosts {
	hs := &Hosts{
		log:      log,
		detached: detachedHandler(),
		sink:     &forward{},
		byPath:   make(map[string]*Host),
	}
	hs.pool = kafka.NewPool(kafka.Logger(slog.New(&gatedHandler{gate: &hs.poolLog, live: log.Handler(), closed: hs.detached})), kafka.Metrics(hs.sink))
	return hs
}

// Host is the session server on one unix socket. It is started by the first
// configuration that names the socket, takes the newest configuration's
// limits and stats on every later Acquire, and drains when the last such
// configuration is released. Upgrades are resolved by redeeming the ticket
// the filter issued; the session then runs with the configuration snapshot
// the ticket holds.
type Host struct {
	hosts   *Hosts
	log     *slog.Logger // behind logGate
	logGate logGate
	socket  *socket
	tickets *ticketStore
	stats   observer
	http    *http.Server
	served  chan struct{} // closed when the accept loop returns
	drained chan struct{} // closed when the drain has finished

	holders []*holder // the live configurations, newest last; guarded by hosts.mu

	mu       sync.Mutex
	current  generation
	retired  []*server.Server // earlier generations, drained at the end
	draining bool
	inflight sync.WaitGroup // requests being handed to a generation; Add only under mu while !draining
}

// holder is a live configuration using a host. Its fields but doc and
// stats are guarded by hosts.mu.
type holder struct {
	doc   *config.Document
	stats Stats
	// sessions is canceled, closing with 1001 the sessions running under
	// it, when the configuration's drain deadline nears; it is then
	// replaced by a fresh one for sessions that start later.
	sessions    context.Context
	endSessions context.CancelFunc
	// replaced fires DrainLead before the end of doc.Session.DrainTime
	// after a newer configuration arrived; nil until one did, or when
	// drain_time is 0.
	replaced *time.Timer
}

func newHolder(doc *config.Document, stats Stats) *holder {
	x := &holder{doc: doc, stats: stats}
	x.sessions, x.endSessions = context.WithCancel(context.Background())
	return x
}

// generation is a session server built for one set of session limits.
// Sessions stay with the generation that accepted them; generations share
// the process's memory budget while limits.max_memory_bytes stays the same.
type generation struct {
	limits  config.Session
	process config.Limits
	memory  *pubsub.MemoryBudget
	srv     *server.Server
}

// Acquire returns the host of doc.Listener, starting it if this is the first
// configuration naming it, and makes it use doc's limits and stats from now
// on. A socket path another process serves is taken over when this host
// issues its first ticket (see Issue), not before: a process that only
// validates the configuration (envoy --mode validate) leaves it alone.
func (hs *Hosts) Acquire(doc *config.Document, stats Stats) (*Host, error) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.byPath[doc.Listener]
	if h == nil {
		var err error
		if h, err = hs.start(doc.Listener); err != nil {
			return nil, err
		}
		hs.byPath[doc.Listener] = h
	}
	for _, older := range h.holders {
		h.scheduleDrainClose(older)
	}
	h.holders = append(h.holders, newHolder(doc, stats))
	h.update(doc, stats)
	hs.poolLog.set(true)
	return h, nil
}

// Release drops the hold of the configuration whose stats are stats; the
// limits and stats of the newest remaining configuration take over. The last
// release stops accepting, gives the socket path up and drains in the
// background: it does not wait for sessions.
func (hs *Hosts) Release(h *Host, stats Stats) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	held := len(h.holders)
	h.holders = slices.DeleteFunc(h.holders, func(x *holder) bool {
		if x.stats != stats {
			return false
		}
		if x.replaced != nil {
			x.replaced.Stop()
		}
		return true
	})
	if len(h.holders) == held {
		return // not held by stats, or released already
	}
	if n := len(h.holders); n > 0 {
		newest := h.holders[n-1]
		h.update(newest.doc, newest.stats)
		return
	}
	if hs.byPath[h.socket.path] == h {
		delete(hs.byPath, h.socket.path)
	}
	// The released configuration's stats and log die with it (Envoy
	// refuses them once it is destroyed): the draining sessions report to
	// no one and log to stderr.
	h.stats.use(nil)
	hs.sink.drop(stats, hs.anyStats())
	h.logGate.set(false)
	if len(hs.byPath) == 0 {
		hs.poolLog.set(false)
	}
	h.drain(drainTimeout)
}

// anyStats returns the stats of the newest configuration of some host, nil
// when no host is held. Callers hold hs.mu.
func (hs *Hosts) anyStats() Stats {
	for _, h := range hs.byPath {
		if n := len(h.holders); n > 0 {
			return h.holders[n-1].stats
		}
	}
	return nil
}

func (hs *Hosts) start(path string) (*Host, error) {
	h := &Host{
		hosts:   hs,
		tickets: newTicketStore(time.Now),
		served:  make(chan struct{}),
		drained: make(chan struct{}),
	}
	h.logGate.set(true)
	log := slog.New(&gatedHandler{gate: &h.logGate, live: hs.log.Handler(), closed: hs.detached}).With("listener", path)
	h.log = log
	h.http = server.NewHTTPServer(h, log)
	sock, err := openSocket(path, log, func(ln net.Listener) { h.goSafe("accept loop", func() { h.serve(ln) }) })
	if err != nil {
		return nil, err
	}
	h.socket = sock
	return h, nil
}

// scheduleDrainClose arms the drain close of older, which a newer
// configuration has just replaced, if its session.drain_time says how long
// Envoy drains its listener and it is not armed yet. Called under hosts.mu.
func (h *Host) scheduleDrainClose(older *holder) {
	drainTime := older.doc.Session.DrainTime.Duration()
	if drainTime <= 0 || older.replaced != nil {
		return
	}
	older.replaced = time.AfterFunc(drainTime-DrainLead(drainTime), func() {
		defer func() {
			if p := recover(); p != nil {
				h.log.Error("pubsub: panic closing the sessions of a replaced configuration", "panic", p, "stack", string(debug.Stack()))
			}
		}()
		h.endDrainedSessions(older)
	})
}

// endDrainedSessions closes with 1001 the sessions of older, a replaced
// configuration whose listener Envoy is about to stop draining: clients
// resume at once instead of seeing their connection cut (1006). Sessions
// older admits later keep running: Envoy closes them if they are on the
// drained listener.
func (h *Host) endDrainedSessions(older *holder) {
	h.hosts.mu.Lock()
	defer h.hosts.mu.Unlock()
	if !slices.Contains(h.holders, older) {
		return // released meanwhile: Envoy destroyed it, its streams have ended
	}
	end := older.endSessions
	older.sessions, older.endSessions = context.WithCancel(context.Background())
	end()
	h.log.Info("pubsub: closing the sessions of a replaced configuration before Envoy's drain of its listener ends",
		"drain_time", older.doc.Session.DrainTime.Duration().String())
}

// sessionsOf returns the context that ends the sessions issuer admits, nil
// when issuer is no configuration this host holds.
func (h *Host) sessionsOf(issuer *config.Document) context.Context {
	if issuer == nil {
		return nil
	}
	h.hosts.mu.Lock()
	defer h.hosts.mu.Unlock()
	for _, x := range h.holders {
		if x.doc == issuer {
			return x.sessions
		}
	}
	return nil
}

// goSafe runs fn in a goroutine that recovers a panic: inside Envoy an
// unrecovered panic kills the proxy.
func (h *Host) goSafe(what string, fn func()) {
	go func() {
		defer func() {
			if p := recover(); p != nil {
				h.log.Error("pubsub: panic in session server "+what, "panic", p, "stack", string(debug.Stack()))
			}
		}()
		fn()
	}()
}

func (h *Host) serve(ln net.Listener) {
	defer close(h.served)
	h.log.Info("pubsub: session server listening")
	err := h.http.Serve(ln)
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		h.log.Error("pubsub: session server stopped", "err", err)
	}
}

// update swaps in doc's limits (as a new generation when they changed) and
// stats. Sessions already running keep their generation.
func (h *Host) update(doc *config.Document, stats Stats) {
	h.stats.use(stats)
	h.hosts.sink.use(stats)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.current.srv != nil && h.current.limits == doc.Session && h.current.process == doc.Limits {
		return
	}
	opts := server.OptionsFrom(doc, h.log)
	opts.Observer = &h.stats
	opts.Metrics = h.hosts.sink
	// Only Envoy reaches the socket, and it forwards HTTP/2 WebSockets
	// without a key (server.Options.KeylessUpgrade).
	opts.KeylessUpgrade = true
	if h.current.srv != nil {
		h.retired = append(h.retired, h.current.srv)
		if h.current.process == doc.Limits {
			opts.Session.Memory = h.current.memory // one budget for old and new sessions
		}
	}
	h.current = generation{limits: doc.Session, process: doc.Limits, memory: opts.Session.Memory, srv: server.New(h, opts)}
}

// Issue stores g under a new one-time ticket valid for ttl, with at most
// limit tickets outstanding, and returns the ticket. A host whose socket
// path another process serves starts taking the path over, atomically and
// in the background, and answers ErrStarting until it has: from then on new
// upgrades reach this host, while the other process keeps the sessions it
// has. Errors: ErrTicketsFull, ErrStarting, ErrSuperseded when another
// process has taken the path from this host, ErrDraining. Issue makes no
// system call but for the ticket's random bytes: it runs on Envoy's worker
// threads.
func (h *Host) Issue(g *Grant, ttl time.Duration, limit int) (string, error) {
	if err := h.socket.serving(); err != nil {
		return "", err
	}
	ticket, outstanding, err := h.tickets.issue(g, ttl, limit)
	h.stats.ticketsOutstanding(outstanding)
	return ticket, err
}

// Revoke withdraws ticket if it was issued and is neither redeemed nor
// expired, and reports whether it did. The filter revokes the ticket of a
// stream that ends before its upgrade reached the session server (the
// router's 503, a failed connect, a client reset), so that such streams do
// not hold tickets for their whole TTL. It is O(1) and takes the store's
// lock only for a map and a list update: safe on an Envoy worker thread.
func (h *Host) Revoke(ticket string) bool {
	if !h.tickets.revoke(ticket) {
		return false
	}
	h.stats.ticketsOutstanding(h.tickets.pending())
	return true
}

// Redeem returns the grant of ticket and invalidates the ticket.
func (h *Host) Redeem(ticket string) (*Grant, error) { return h.redeem(ticket) }

func (h *Host) redeem(ticket string) (*Grant, error) {
	g, err := h.tickets.redeem(ticket)
	h.stats.ticketsOutstanding(h.tickets.pending())
	return g, err
}

// Pending returns the number of outstanding tickets; expired ones count
// until the next issue or redeem drops them.
func (h *Host) Pending() int { return h.tickets.pending() }

// Drained is closed when the host has drained after its last release.
func (h *Host) Drained() <-chan struct{} { return h.drained }

// ServeHTTP hands a request on the socket to the current generation. The
// drain waits for these hand-offs, so that every session they start is one
// the drain knows of.
func (h *Host) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
func (h *Host) Resolve(r *http.Request) (server.Route, error) {
	g, err := h.redeem(r.Header.Get(TicketHeader))
	if err != nil {
		h.stats.ticketRejected()
		h.log.Warn("pubsub: upgrade refused", "reason", err.Error(), "remote", r.RemoteAddr)
		return server.Route{}, &server.Error{Status: http.StatusUnauthorized, Message: "missing, invalid, used or expired pub-sub ticket", Reason: "ticket"}
	}
	h.mu.Lock()
	limits := h.current.limits
	h.mu.Unlock()
	policy := kafka.NewPolicy(g.Kafka, g.Routes...).WithLimits(limits).WithClaims(g.Claims)
	route, err := server.KafkaRoute(h.hosts.pool, g.Cluster, g.Kafka, policy, h.log)
	route.Context = h.sessionsOf(g.Issuer)
	if err != nil || (g.Claims == nil && g.Verifier == nil) {
		return route, err
	}
	return route.WithIdentity(identity.NewSession(g.Claims, g.Verifier, h.log)), nil
}

// drain stops accepting and gives the socket path up at once (a successor
// in this process or another may bind it right away), then, in the
// background, sends every session 1001 and waits up to timeout for them to
// end.
func (h *Host) drain(timeout time.Duration) {
	h.mu.Lock()
	h.draining = true
	servers := append(h.retired, h.current.srv)
	h.mu.Unlock()
	accepting := h.socket.close()
	h.goSafe("drain", func() {
		defer close(h.drained)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		var errs []error
		errs = append(errs, h.http.Shutdown(ctx))
		handedOff := make(chan struct{})
		h.goSafe("hand-off wait", func() {
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
		if accepting {
			<-h.served
		}
		if err := errors.Join(errs...); err != nil {
			h.log.Warn("pubsub: session server drained with errors", "err", err)
			return
		}
		h.log.Info("pubsub: session server drained")
	})
}
