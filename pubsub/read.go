package pubsub

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/envoy-pubsub/gateway/metrics"
)

// readLoop reads frames until the session ends, or until it parks the
// session (parked true): a session with a watch whose client sent nothing
// for parkAfter, between two messages, is left to the poller.
func (s *session) readLoop() (parked bool, err error) {
	var msg *[]byte // reassembly buffer of the message being read
	defer func() {
		if msg != nil {
			putBuf(msg)
		}
	}()
	fragmented := false
	for {
		if msg == nil && s.watch != nil && s.in.empty() && !s.closing.Load() {
			idle, err := s.awaitInput()
			if err == nil && idle {
				if s.park() {
					return true, nil
				}
				continue
			}
			if err != nil {
				return false, s.readFailed(err)
			}
		}
		// The idle deadline moves with the client's messages and pings,
		// not with its pongs: answering the server's pings keeps no
		// session open.
		if s.opts.IdleTimeout > 0 && !s.closing.Load() {
			s.conn.SetReadDeadline(time.Unix(0, s.idleAt.Load()))
		}
		h, err := ws.ReadHeaderBuffer(&s.in, s.in.headerScratch())
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && s.streams.Load() > 0 && !s.closing.Load() {
				s.active()
				continue // a client whose streams are live has no need to speak
			}
			return false, s.readFailed(err)
		}
		state := ws.StateServerSide
		if fragmented {
			state = state.Set(ws.StateFragmented)
		}
		if err := ws.CheckHeader(h, state); err != nil {
			s.unread = -1
			s.closeWith(CloseProtocolError, err.Error())
			return false, err
		}
		if h.OpCode.IsControl() {
			if h.OpCode == ws.OpPing {
				s.active()
			}
			if done, err := s.control(h); done {
				return false, err
			}
			continue
		}
		if h.OpCode == ws.OpText {
			s.unread = h.Length
			s.closeWith(CloseUnsupportedData, "text frames are not supported; send binary protobuf")
			return false, errors.New("pubsub: text frame")
		}
		size := int64(0)
		if msg != nil {
			size = int64(len(*msg))
		}
		if size+h.Length > int64(s.opts.MaxFrameBytes) {
			s.unread = h.Length
			s.closeWith(CloseMessageTooBig, fmt.Sprintf("message exceeds %d bytes", s.opts.MaxFrameBytes))
			return false, errors.New("pubsub: message too big")
		}
		if msg == nil {
			msg = getBuf()
		}
		start := len(*msg)
		*msg = grow(*msg, int(h.Length))
		if _, err := io.ReadFull(&s.in, (*msg)[start:]); err != nil {
			return false, s.readFailed(err)
		}
		ws.Cipher((*msg)[start:], h.Mask, 0)
		if !h.Fin {
			fragmented = true
			continue
		}
		fragmented = false
		if s.closing.Load() {
			// Closing: the client's messages are read only to reach its
			// close frame.
			(*msg) = (*msg)[:0]
			continue
		}
		if !s.dispatch(*msg) {
			return false, s.ctx.Err()
		}
		putBuf(msg)
		msg = nil
		s.active()
	}
}

// readFailed ends the session after a failed read, closing with a reason a
// client can act on.
func (s *session) readFailed(err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		s.closeWith(CloseNormal, closeReasonIdle)
		return err
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// control handles a control frame; done reports that the session ends.
func (s *session) control(h ws.Header) (done bool, err error) {
	var buf [125]byte
	p := buf[:h.Length]
	if _, err := io.ReadFull(&s.in, p); err != nil {
		return true, s.readFailed(err)
	}
	ws.Cipher(p, h.Mask, 0)
	switch h.OpCode {
	case ws.OpPing:
		if err := s.writeFrame(ws.OpPong, p); err != nil {
			return true, err
		}
	case ws.OpPong:
		s.keepalive.pong.Store(true)
	case ws.OpClose:
		code, reason := ws.ParseCloseFrameData(p)
		if err := ws.CheckCloseFrameData(code, reason); err != nil {
			s.closeWith(CloseProtocolError, err.Error())
			return true, err
		}
		s.peerClosed = true
		if code.Empty() {
			code = CloseNormal
		}
		s.closeWith(code, "")
		return true, nil
	}
	return false, nil
}

// readAheadSize is the read-ahead of a session: a typical request (frame
// header and a fetch command of a few dozen bytes) arrives in one read.
const readAheadSize = 128

// readBuffers are the buffers of a session's reader: its read-ahead and
// the scratch space of a frame header. A session takes them from
// readBufferPool while a reader runs and gives them back when its reader
// parks or the session ends, so that an idle session holds none.
type readBuffers struct {
	ahead [readAheadSize]byte
	hdr   [ws.MaxHeaderSize - 2]byte
}

var readBufferPool = sync.Pool{New: func() any { return new(readBuffers) }}

// readAhead reads the client's bytes in chunks of readAheadSize, so that a
// small request costs one read system call rather than one per frame header
// part and payload. Large payloads are read straight into their buffer. Only
// the session's reader goroutine uses it.
type readAhead struct {
	conn    net.Conn
	metrics metrics.Engine // nil: none
	// buf is taken from readBufferPool when first needed; nil after
	// release.
	buf      *readBuffers
	pos, end int
	// read counts the bytes read from conn.
	read int64
}

// buffers returns the reader's buffers, taking them from the pool when
// it holds none.
func (r *readAhead) buffers() *readBuffers {
	if r.buf == nil {
		r.buf = readBufferPool.Get().(*readBuffers)
	}
	return r.buf
}

// headerScratch returns the space ws.ReadHeaderBuffer reads a frame header
// into.
func (r *readAhead) headerScratch() []byte { return r.buffers().hdr[:] }

// release gives the buffers back to the pool; the read-ahead must be
// empty (a reader about to park, or a session that ended).
func (r *readAhead) release() {
	if r.buf != nil {
		readBufferPool.Put(r.buf)
		r.buf = nil
	}
	r.pos, r.end = 0, 0
}

// empty reports whether no read-ahead bytes are left.
func (r *readAhead) empty() bool { return r.pos == r.end }

// fill reads what the client sent into the empty read-ahead. A read error
// that came with data shows again on the next read.
func (r *readAhead) fill() error {
	n, err := r.conn.Read(r.buffers().ahead[:])
	r.count(n)
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return err
	}
	r.pos, r.end = 0, n
	return nil
}

// Read implements io.Reader, serving read-ahead bytes first.
func (r *readAhead) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // never block for nothing
	}
	if r.pos == r.end {
		if len(p) >= readAheadSize {
			n, err := r.conn.Read(p)
			r.count(n)
			return n, err
		}
		n, err := r.conn.Read(r.buffers().ahead[:])
		r.count(n)
		if n == 0 {
			return 0, err
		}
		// A read error that came with data shows again on the next read.
		r.pos, r.end = 0, n
	}
	n := copy(p, r.buf.ahead[r.pos:r.end])
	r.pos += n
	return n, nil
}

func (r *readAhead) count(n int) {
	if n > 0 {
		r.read += int64(n)
		if r.metrics != nil {
			r.metrics.BytesRead(n)
		}
	}
}
