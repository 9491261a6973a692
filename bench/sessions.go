package bench

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// maxOpenFiles is the RLIMIT_NOFILE both the benchmark and the gateway ask
// for: each idle session holds a socket at each end.
const maxOpenFiles = 32768

// IdleStep is the gateway's memory with a number of idle sessions open.
type IdleStep struct {
	Sessions int `json:"sessions"`
	// HeapPerSession is the growth of heap and stacks in use, per session,
	// and StackPerSession the stacks' part of it.
	HeapPerSession  float64 `json:"heap_bytes_per_session"`
	StackPerSession float64 `json:"stack_bytes_per_session"`
	// RSSPerSession is the growth of resident memory, per session.
	RSSPerSession float64 `json:"rss_bytes_per_session"`
	// Goroutines is the gateway's goroutine count.
	Goroutines int `json:"goroutines"`
}

// SessionsResult is the cost of idle sessions and of opening them.
type SessionsResult struct {
	Steps []IdleStep `json:"steps"`
	// HandshakesPerS is the upgrade rate while opening the sessions, with
	// handshakeConcurrency dialers.
	HandshakesPerS float64 `json:"handshakes_per_s"`
}

// handshakeConcurrency is the number of concurrent dialers.
const handshakeConcurrency = 16

// measureIdleSessions opens idle sessions up to each of steps (ascending)
// and reads the gateway's memory at each. The client ends are bare sockets
// in this process, so nothing of them is counted.
func measureIdleSessions(ctx context.Context, g *gatewayProcess, steps []int) (res SessionsResult, err error) {
	base, err := g.stats()
	if err != nil {
		return res, err
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		if err == nil {
			err = awaitDrained(g)
		}
	}()
	var dialing time.Duration
	for _, n := range steps {
		start := time.Now()
		opened, err := dialIdle(ctx, g.target.url, n-len(conns))
		conns = append(conns, opened...)
		if err != nil {
			return res, fmt.Errorf("with %d sessions open: %w", len(conns), err)
		}
		dialing += time.Since(start)
		s, err := awaitSessions(g, n)
		if err != nil {
			return res, err
		}
		res.Steps = append(res.Steps, IdleStep{
			Sessions:        n,
			HeapPerSession:  (float64(s.Heap()) - float64(base.Heap())) / float64(n),
			StackPerSession: (float64(s.StackInuse) - float64(base.StackInuse)) / float64(n),
			RSSPerSession:   (float64(s.RSS) - float64(base.RSS)) / float64(n),
			Goroutines:      s.Goroutines,
		})
	}
	res.HandshakesPerS = float64(len(conns)) / dialing.Seconds()
	return res, nil
}

// dialIdle opens n sessions that send nothing, with handshakeConcurrency
// dialers. On failure it returns the sessions it opened and the first error.
func dialIdle(ctx context.Context, url string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	errs := make(chan error, handshakeConcurrency)
	var claimed atomic.Int64
	for range handshakeConcurrency {
		goSafe(errs, func() error {
			for i := claimed.Add(1) - 1; i < int64(n); i = claimed.Add(1) - 1 {
				conn, _, _, err := ws.Dial(ctx, url)
				if err != nil {
					return err
				}
				conns[i] = conn
			}
			return nil
		})
	}
	var err error
	for range handshakeConcurrency {
		err = firstOf(err, <-errs)
	}
	return slices.DeleteFunc(conns, func(c net.Conn) bool { return c == nil }), err
}

// awaitDrained waits until the gateway serves no session, so that the next
// measurement does not share the CPU with the teardown of closed ones.
func awaitDrained(g *gatewayProcess) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := g.stats()
		if err != nil || s.Sessions == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway still serves %d sessions after their clients closed", s.Sessions)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// awaitSessions waits until the gateway serves n sessions (a client's dial
// returns before the server has started the session) and returns its stats.
func awaitSessions(g *gatewayProcess, n int) (GatewayStats, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := g.stats()
		if err != nil || s.Sessions >= n {
			return s, err
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("gateway serves %d sessions, want %d", s.Sessions, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
