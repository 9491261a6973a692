package server

import (
	"errors"
	"fmt"
)

// Causes of a server that does not accept sessions.
var (
	ErrShuttingDown    = errors.New("server is shutting down")
	ErrMemoryLimit     = errors.New("memory limit reached")
	errTooManySessions = "too many sessions"
)

// Accepting returns nil when the server would start a session for a valid
// upgrade now, else why not: it is shutting down, serves MaxSessions
// sessions, or its sessions hold the process's memory budget.
func (s *Server) Accepting() error {
	switch {
	case s.ctx.Err() != nil:
		return ErrShuttingDown
	case s.active.Load() >= int64(s.opts.MaxSessions):
		return fmt.Errorf("%s (%d)", errTooManySessions, s.opts.MaxSessions)
	case s.opts.Session.Memory != nil && s.opts.Session.Memory.Full():
		return ErrMemoryLimit
	}
	return nil
}
