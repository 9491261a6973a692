// Package netpoll calls a function when a connection has input, without a
// goroutine waiting on it: one goroutine per process waits on every watched
// connection (epoll on Linux). A server keeps idle connections this way
// without a goroutine, and its stack, parked on each of them.
//
// A watch is one-shot: after Arm it fires once, when the connection has
// input or was hung up on; its owner then reads with a goroutine of its own
// until it has nothing more to read, and arms it again.
package netpoll

import (
	"errors"
	"sync"
	"syscall"
)

// ErrUnsupported is returned by New where the platform has no poller, or
// for a connection without a file descriptor (syscall.Conn).
var ErrUnsupported = errors.New("netpoll: not supported for this connection")

// ErrClosed is returned by Arm once the watch or its connection is closed.
var ErrClosed = errors.New("netpoll: closed")

// Watch is one connection watched for input.
type Watch struct {
	p          *poller
	rc         syscall.RawConn
	id         uint64
	onReadable func()

	mu     sync.Mutex
	added  bool // registered with the poller
	closed bool
}

// New returns a watch that calls onReadable once after each Arm, when conn
// has input or was hung up on. onReadable runs on the poller's goroutine
// and must return at once (it starts a goroutine to read); a call may still
// come just after Close, which the owner must tolerate. conn must implement
// syscall.Conn (TCP and unix sockets do). The watch registers nothing until
// its first Arm.
func New(conn any, onReadable func()) (*Watch, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil, ErrUnsupported
	}
	p, err := shared()
	if err != nil {
		return nil, err
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, ErrUnsupported
	}
	w := &Watch{p: p, rc: rc, onReadable: onReadable}
	p.mu.Lock()
	p.next++
	w.id = p.next
	p.watches[w.id] = w
	p.mu.Unlock()
	return w, nil
}

// Arm makes the watch fire once, when the connection has input (at once if
// it has some already).
func (w *Watch) Arm() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	var ctlErr error
	// Control holds the descriptor open: it is never one that a closed
	// connection left to another.
	err := w.rc.Control(func(fd uintptr) { ctlErr = w.p.arm(int(fd), w.id, w.added) })
	if err != nil {
		return ErrClosed
	}
	if ctlErr != nil {
		return ctlErr
	}
	w.added = true
	return nil
}

// Close stops watching. Closing the connection without Close leaks the
// watch's entry in the poller.
func (w *Watch) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	if w.added {
		// A closed descriptor left the poller by itself.
		w.rc.Control(func(fd uintptr) { w.p.remove(int(fd)) })
	}
	w.p.mu.Lock()
	delete(w.p.watches, w.id)
	w.p.mu.Unlock()
}

// poller is the process's one waiter on all watches.
type poller struct {
	fd      int // the platform's poller (an epoll instance)
	mu      sync.Mutex
	watches map[uint64]*Watch // by id: an event names the watch, not the descriptor, which a closed connection may hand on
	next    uint64
}

var (
	sharedOnce   sync.Once
	sharedPoller *poller
	sharedErr    error
)

// shared returns the process's poller, started on first use.
func shared() (*poller, error) {
	sharedOnce.Do(func() {
		sharedPoller, sharedErr = open()
		if sharedErr == nil {
			sharedPoller.watches = make(map[uint64]*Watch)
			go sharedPoller.loop()
		}
	})
	return sharedPoller, sharedErr
}

// fire calls the watch's function of id, if the watch is still open.
func (p *poller) fire(id uint64) {
	p.mu.Lock()
	w := p.watches[id]
	p.mu.Unlock()
	if w != nil {
		w.onReadable()
	}
}
