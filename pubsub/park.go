package pubsub

import (
	"errors"
	"os"
	"time"
)

// defaultParkAfter is how long the reader of a session with a watch waits
// for the client's next message before it parks: a client that speaks
// often keeps its reader, one that falls silent (an idle session, a
// subscriber) costs no goroutine.
const defaultParkAfter = 100 * time.Millisecond

// Reader states (session.readState).
const (
	readRunning int32 = iota
	readParked
)

// active moves the session's idle deadline to IdleTimeout from now.
func (s *session) active() {
	if s.opts.IdleTimeout > 0 {
		s.idleAt.Store(time.Now().Add(s.opts.IdleTimeout).UnixNano())
	}
}

// awaitInput waits up to the park delay for the client's next bytes and reads
// them ahead. silent reports that none came and the session is not due to
// idle out (a session with live streams does not idle out: its deadline
// moves), so the reader may park; err is the read's failure, or the
// deadline's when the session idles out.
func (s *session) awaitInput() (silent bool, err error) {
	deadline := time.Now().Add(s.opts.parkAfter)
	idleAt := s.idleAt.Load()
	if s.opts.IdleTimeout > 0 && idleAt < deadline.UnixNano() {
		deadline = time.Unix(0, idleAt)
	}
	s.conn.SetReadDeadline(deadline)
	err = s.in.fill()
	if err == nil {
		if s.opts.IdleTimeout <= 0 && !s.closing.Load() {
			s.conn.SetReadDeadline(time.Time{}) // the rest of the message may take its time
		}
		return false, nil
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) || s.closing.Load() {
		return false, err
	}
	switch {
	case s.opts.IdleTimeout <= 0 || time.Now().UnixNano() < idleAt:
		return true, nil
	case s.streams.Load() > 0:
		s.active() // a client whose streams are live has no need to speak
		return true, nil
	}
	return false, err
}

// park hands the session's reading to its watch; it reports false when
// the calling reader must go on reading instead (the connection failed or
// the session is closing, and no other reader took over).
func (s *session) park() bool {
	s.in.release() // taken again by the next reader
	s.readState.Store(readParked)
	if s.idlesWhileParked() {
		s.rearmTimer() // to the idle deadline, if it comes first
	}
	// A closing session or failed connection is noticed either here or by
	// wakeReader, which sees the reader parked.
	if s.watch.Arm() == nil && !s.closing.Load() && !s.connFailed.Load() {
		return true
	}
	return !s.readState.CompareAndSwap(readParked, readRunning)
}

// wakeReader starts a reader for a parked session: the client sent
// something, or the session must read to end.
func (s *session) wakeReader() {
	if s.readState.CompareAndSwap(readParked, readRunning) {
		go s.read()
	}
}

// onReadable is the watch's function: the client of a parked session sent
// something.
func (s *session) onReadable() { s.wakeReader() }

// idleCheck closes a parked session whose idle deadline passed, unless its
// streams are live (the deadline then moves); it runs on the session's
// timer.
func (s *session) idleCheck() {
	if s.readState.Load() != readParked || time.Now().UnixNano() < s.idleAt.Load() {
		return
	}
	if s.streams.Load() > 0 && !s.closing.Load() {
		s.active()
		return
	}
	if s.readState.CompareAndSwap(readParked, readRunning) {
		s.read() // its deadline has passed: it closes the session as idle
	}
}
