package sessionhost

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// staleProbeTimeout is how long a leftover socket file may take to answer
// before it is considered stale.
const staleProbeTimeout = 500 * time.Millisecond

// maxSocketPath is the longest path a unix socket address holds (sun_path
// without its terminating NUL).
const maxSocketPath = 107

// ownershipPoll is how often a serving socket checks, off Envoy's worker
// threads, that the file at its path is still its own: another process
// that took the path over is noticed within this time.
const ownershipPoll = 100 * time.Millisecond

// ErrStarting: the host is taking the socket path over from another
// process, in the background; the upgrade should be retried.
var ErrStarting = errors.New("the session server is taking the socket over from another process")

// socketState is where a host's socket is in its life.
type socketState int

const (
	// standby: another process serves the path; this host binds nothing
	// until it issues its first ticket.
	socketStandby socketState = iota
	// serving: this host's listener is bound at the path.
	socketServing
	// superseded: another process renamed its socket over this host's; the
	// listener still serves the connections it accepted.
	socketSuperseded
	// closed: the host is draining.
	socketClosed
)

// socket is a host's unix socket. A file path is taken over atomically: the
// listener is bound at a temporary name in the same directory and renamed
// into place, so that clients always find a live socket at the path, the
// old one until the rename and the new one after it, while the previous
// owner keeps the connections it accepted. An advisory lock on path.lock
// keeps a take-over and a previous owner's removal of the path from
// interleaving. A Linux abstract name (@name) cannot be taken over: it is
// bound when the host starts, and a second process must use another name.
//
// What an upgrade on an Envoy worker thread asks (serving) costs a mutex
// and no system call: the take-over (lock file, bind, rename) and the
// check that the path is still this socket's (stat) run in goroutines.
type socket struct {
	path  string
	log   *slog.Logger
	serve func(net.Listener) // starts the accept loop on a bound listener

	pathMu sync.Mutex // serialises take-over, ownership checks and close; never taken on a worker

	mu         sync.Mutex
	state      socketState
	takingOver bool
	ln         net.Listener
	bound      os.FileInfo   // the file this host's listener was bound as
	closed     chan struct{} // stops the ownership watcher
}

// openSocket prepares path and binds it, unless another process serves it:
// then the socket stays on standby until serving is called. A file at path
// that is not a socket is an error; a socket nothing answers on is stale and
// is replaced.
func openSocket(path string, log *slog.Logger, serve func(net.Listener)) (*socket, error) {
	s := &socket{path: path, log: log, serve: serve, closed: make(chan struct{})}
	if isAbstract(path) {
		ln, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("listener: %w (an abstract socket cannot be handed over: give each Envoy its own name, or use a socket file path)", err)
		}
		s.state, s.ln = socketServing, ln
		serve(ln)
		return s, nil
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("listener: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("listener: %w", err)
	case fi.Mode()&fs.ModeSocket == 0:
		return nil, fmt.Errorf("listener: %s exists and is not a socket", path)
	default:
		if c, err := net.DialTimeout("unix", path, staleProbeTimeout); err == nil {
			c.Close()
			s.state = socketStandby
			log.Info("pubsub: another process serves the session socket; this one takes it over when it issues its first ticket")
			return s, nil
		}
	}
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	if err := s.takeOver(); err != nil {
		return nil, err
	}
	return s, nil
}

// serving reports whether new upgrades routed to the path reach this
// socket. A socket on standby starts taking the path over in the
// background and returns ErrStarting until it has; ErrSuperseded once
// another process has taken the path from this socket; ErrDraining after
// close. It makes no system call: it runs on Envoy's worker threads.
func (s *socket) serving() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case socketStandby:
		if !s.takingOver {
			s.takingOver = true
			go s.takeOverInBackground()
		}
		return ErrStarting
	case socketServing:
		return nil
	case socketSuperseded:
		return ErrSuperseded
	default:
		return ErrDraining
	}
}

// takeOverInBackground takes the path over for a socket on standby; a
// failure is logged and the next upgrade tries again.
func (s *socket) takeOverInBackground() {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("pubsub: panic taking the session socket over", "panic", p)
		}
	}()
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	s.mu.Lock()
	standby := s.state == socketStandby
	s.mu.Unlock()
	var err error
	if standby {
		err = s.takeOver()
	}
	s.mu.Lock()
	s.takingOver = false
	s.mu.Unlock()
	if err != nil {
		s.log.Error("pubsub: taking the session socket over", "err", err)
	}
}

// takeOver binds a listener at a temporary name beside the path, makes it
// private and renames it into place, then starts serving and watching the
// path. The caller holds pathMu.
func (s *socket) takeOver() error {
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	tmp := filepath.Join(filepath.Dir(s.path), "."+hex.EncodeToString(suffix[:])+".sock")
	if len(tmp) > maxSocketPath {
		return fmt.Errorf("listener: %s: the directory name is too long for a unix socket (at most %d bytes with a 14-byte file name)", s.path, maxSocketPath)
	}
	var ln *net.UnixListener
	var bound os.FileInfo
	err := s.withPathLock(func() error {
		var err error
		if ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"}); err != nil {
			return err
		}
		ln.SetUnlinkOnClose(false) // the file may be another process's by then
		if err := os.Chmod(tmp, 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, s.path); err != nil {
			return err
		}
		bound, err = os.Stat(s.path)
		return err
	})
	if err != nil {
		if ln != nil {
			ln.Close()
			os.Remove(tmp)
		}
		return fmt.Errorf("listener: %w", err)
	}
	s.mu.Lock()
	if s.state == socketClosed { // closed while binding: give the path back
		s.mu.Unlock()
		s.removeIfOwned(bound)
		ln.Close()
		return ErrDraining
	}
	s.state, s.ln, s.bound = socketServing, ln, bound
	s.mu.Unlock()
	s.serve(ln)
	go s.watchOwnership()
	return nil
}

// watchOwnership marks the socket superseded when the file at its path is
// no longer the one it bound (another process renamed its own over it).
func (s *socket) watchOwnership() {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("pubsub: panic watching the session socket", "panic", p)
		}
	}()
	ticker := time.NewTicker(ownershipPoll)
	defer ticker.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-ticker.C:
		}
		// The stat runs without mu, which upgrades on the workers take.
		s.pathMu.Lock()
		s.mu.Lock()
		serving, bound := s.state == socketServing, s.bound
		s.mu.Unlock()
		owned := !serving || ownsPath(s.path, bound)
		if !owned {
			s.mu.Lock()
			s.state = socketSuperseded
			s.mu.Unlock()
		}
		s.pathMu.Unlock()
		if !owned {
			s.log.Warn("pubsub: another process took the session socket over; this one refuses new sessions and keeps its open ones until it drains (expected after a hot restart; otherwise give each Envoy its own listener path)")
			return
		}
		if !serving {
			return
		}
	}
}

// close stops accepting and removes the path if it is still this socket's.
// It reports whether a listener was open (an accept loop was started).
func (s *socket) close() bool {
	s.pathMu.Lock()
	defer s.pathMu.Unlock()
	s.mu.Lock()
	wasClosed := s.state == socketClosed
	s.state = socketClosed
	ln, bound := s.ln, s.bound
	s.mu.Unlock()
	if !wasClosed {
		close(s.closed)
	}
	if ln == nil {
		return false
	}
	if bound != nil {
		s.removeIfOwned(bound)
	}
	ln.Close()
	return true
}

// removeIfOwned removes the path if the file there is bound, under the
// path lock.
func (s *socket) removeIfOwned(bound os.FileInfo) {
	err := s.withPathLock(func() error {
		if ownsPath(s.path, bound) {
			return os.Remove(s.path)
		}
		return nil
	})
	if err != nil {
		s.log.Warn("pubsub: removing the session socket", "err", err)
	}
}

// ownsPath reports whether the file at path is bound.
func ownsPath(path string, bound os.FileInfo) bool {
	fi, err := os.Stat(path)
	return err == nil && os.SameFile(fi, bound)
}

// withPathLock runs fn holding the exclusive advisory lock of path.lock,
// which every process serving the path takes around a take-over and around
// removing the path.
func (s *socket) withPathLock(fn func() error) error {
	f, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}

// isAbstract reports whether path names a Linux abstract socket (@name),
// which has no file.
func isAbstract(path string) bool { return strings.HasPrefix(path, "@") }
