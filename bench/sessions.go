package bench

import (
	"bufio"
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
	// Heap and RSS are the gateway's heap and stacks in use and its
	// resident memory at this step, for slopes between steps.
	Heap uint64 `json:"heap_bytes"`
	RSS  uint64 `json:"rss_bytes"`
}

// SessionsResult is the cost of idle sessions and of opening them.
type SessionsResult struct {
	Steps []IdleStep `json:"steps"`
	// Subscribed are the same steps with every session subscribed to the
	// end of one partition that receives nothing.
	Subscribed []IdleStep `json:"subscribed_steps,omitempty"`
	// HandshakesPerS is the upgrade rate while opening the sessions, with
	// handshakeConcurrency dialers.
	HandshakesPerS float64 `json:"handshakes_per_s"`
}

// handshakeConcurrency is the number of concurrent dialers.
const handshakeConcurrency = 16

// Slope returns the growth of the gateway's heap and stacks, and of its
// resident memory, per session between the steps of from and to sessions
// (ok false when steps lacks either): the cost of one more session, without
// what the first sessions' pools and maps take once.
func Slope(steps []IdleStep, from, to int) (heap, rss float64, ok bool) {
	i := slices.IndexFunc(steps, func(s IdleStep) bool { return s.Sessions == from })
	j := slices.IndexFunc(steps, func(s IdleStep) bool { return s.Sessions == to })
	if i < 0 || j < 0 || to <= from {
		return 0, 0, false
	}
	n := float64(to - from)
	return (float64(steps[j].Heap) - float64(steps[i].Heap)) / n, (float64(steps[j].RSS) - float64(steps[i].RSS)) / n, true
}

// idleSettle is how long the sessions are left alone before each reading:
// longer than the engine waits before it stops reading an idle session
// with a goroutine, so that the reading shows idle sessions.
const idleSettle = 2 * time.Second

// measureIdleSessions opens idle sessions up to each of steps (ascending)
// and reads the gateway's memory at each; with a topic, each session
// subscribes to the end of its partition 0 (which receives nothing) once
// open. The client ends are bare sockets in this process, so nothing of
// them is counted.
func measureIdleSessions(ctx context.Context, g *gatewayProcess, steps []int, topic string) (res []IdleStep, handshakesPerS float64, err error) {
	base, err := g.stats()
	if err != nil {
		return nil, 0, err
	}
	end := int64(-1)
	if topic != "" {
		if end, err = endOffset(ctx, g.target.url, topic); err != nil {
			return nil, 0, err
		}
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
		opened, err := dialIdle(ctx, g.target.url, n-len(conns), topic, end)
		conns = append(conns, opened...)
		if err != nil {
			return nil, 0, fmt.Errorf("with %d sessions open: %w", len(conns), err)
		}
		dialing += time.Since(start)
		if _, err := awaitSessions(g, n); err != nil {
			return nil, 0, err
		}
		time.Sleep(idleSettle)
		s, err := g.stats()
		if err != nil {
			return nil, 0, err
		}
		res = append(res, IdleStep{
			Sessions:        n,
			HeapPerSession:  (float64(s.Heap()) - float64(base.Heap())) / float64(n),
			StackPerSession: (float64(s.StackInuse) - float64(base.StackInuse)) / float64(n),
			RSSPerSession:   (float64(s.RSS) - float64(base.RSS)) / float64(n),
			Goroutines:      s.Goroutines,
			Heap:            s.Heap(),
			RSS:             s.RSS,
		})
	}
	name := "idle"
	if topic != "" {
		name = "idle-subscribed"
	}
	if err := g.call(heapCommand+name, nil); err != nil {
		return nil, 0, err
	}
	return res, float64(len(conns)) / dialing.Seconds(), nil
}

// endOffset returns the end offset of partition 0 of topic.
func endOffset(ctx context.Context, url, topic string) (int64, error) {
	c, err := dialRaw(ctx, url)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return c.listOffset(topic, 0, -1)
}

// dialIdle opens n sessions that send nothing, with handshakeConcurrency
// dialers; with a topic, each first subscribes to its partition 0 from
// offset. On failure it returns the sessions it opened and the first error.
func dialIdle(ctx context.Context, url string, n int, topic string, offset int64) ([]net.Conn, error) {
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
				if topic != "" {
					// A small read buffer: the client holds only the ack.
					c := &rawClient{conn: conn, in: bufio.NewReaderSize(conn, 512)}
					if err := c.subscribe(topic, 0, offset); err != nil {
						return err
					}
				}
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
