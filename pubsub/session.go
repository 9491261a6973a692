package pubsub

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// Options are the limits and hooks of a session. The zero value of a field
// means its default.
type Options struct {
	// MaxFrameBytes bounds one WebSocket message, fragments included; a
	// larger one closes the session with 1009. Default 1 MiB.
	MaxFrameBytes int
	// IdleTimeout closes a session whose client sent no frame for this long
	// while it had no live stream (Request.Hold).
	// Default 60s; negative disables it.
	IdleTimeout time.Duration
	// WriteTimeout closes a session whose client does not take a reply for
	// this long. Default 30s; negative disables it.
	WriteTimeout time.Duration
	// MaxInFlight bounds the requests a session runs at once; while it is
	// reached the session reads no further requests. Default 16.
	MaxInFlight int
	// PushQueueBytes bounds the pushed replies of streaming commands that
	// wait to be written; a full queue pauses the session's pushes.
	// Default 1 MiB.
	PushQueueBytes int
	// PushStallTimeout closes a session with CloseSlowConsumer when its
	// pushes stay paused this long. Default 10s.
	PushStallTimeout time.Duration
	// MaxPendingBytes bounds the reply bytes a session holds: reserved for
	// replies being built (Request.Reserve), encoded or queued but not
	// written. Reservations wait while it is reached, and the session reads
	// no more requests until its replies drain. A session holding nothing
	// may reserve more, so that one large record still goes through.
	// Default 4 MiB.
	MaxPendingBytes int
	// Memory, if set, bounds the reply bytes of all the sessions that share
	// it, on top of each session's MaxPendingBytes.
	Memory *MemoryBudget
	// PingInterval is how often the server sends the client a WebSocket
	// ping, so that proxies see traffic and a dead peer is found.
	// Default 30s; negative disables pings.
	PingInterval time.Duration
	// PongTimeout closes a session (1001 "ping timeout") whose client has
	// not answered a ping this long after it was written. Default 15s.
	PongTimeout time.Duration
	// Logger receives session events; default slog.Default().
	Logger *slog.Logger
	// OnCommand, if set, is called after each command with its name and the
	// handler's error (nil on success), for metrics.
	OnCommand func(command string, err error)
}

// Default limits.
const (
	DefaultMaxFrameBytes = 1 << 20
	DefaultIdleTimeout   = 60 * time.Second
	DefaultWriteTimeout  = 30 * time.Second
	DefaultMaxInFlight   = 16
	DefaultPingInterval  = 30 * time.Second
	DefaultPongTimeout   = 15 * time.Second
)

func (o Options) withDefaults() Options {
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.PushQueueBytes <= 0 {
		o.PushQueueBytes = DefaultPushQueueBytes
	}
	if o.PushStallTimeout <= 0 {
		o.PushStallTimeout = DefaultPushStallTimeout
	}
	if o.MaxPendingBytes <= 0 {
		o.MaxPendingBytes = DefaultMaxPendingBytes
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = DefaultPongTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// WebSocket close codes used by the engine (RFC 6455 section 7.4.1).
const (
	CloseNormal           = ws.StatusNormalClosure
	CloseGoingAway        = ws.StatusGoingAway
	CloseProtocolError    = ws.StatusProtocolError
	CloseUnsupportedData  = ws.StatusUnsupportedData
	CloseMessageTooBig    = ws.StatusMessageTooBig
	CloseInternalError    = ws.StatusInternalServerError
	ClosePolicyViolation  = ws.StatusPolicyViolation
	closeReasonIdle       = "idle timeout"
	closeReasonShutdown   = "server shutting down"
	closeReasonPing       = "ping timeout"
	errMsgNoCommand       = "invalid request: no command"
	errMsgUndecodable     = "invalid request: cannot decode PubSubReq"
	errMsgInternalFailure = "internal error"
)

// ErrSessionClosed is returned by Request.Push after the session ended.
var ErrSessionClosed = errors.New("pubsub: session closed")

// Request is one decoded client request being served.
type Request struct {
	// Msg is the decoded request.
	Msg *pb.PubSubReq
	// Command is the name of the command set in Msg.
	Command string
	s       *session
	// order is the request's position among the session's requests of
	// the same command; see Order.
	order uint64
	// afterReply run once the reply is written; see AfterReply.
	afterReply []func()
	// reserved are the reply bytes taken with Reserve.
	reserved int64
}

// Reserve makes the request hold n bytes of the session's and the
// process's reply budgets for the reply the handler is about to build. More
// than it holds waits while the budgets are spent (the client has not read
// earlier replies, or the process holds its limit); less gives the rest
// back at once, when the reply turns out smaller than feared. A handler
// calls it before it allocates a large reply (or asks Kafka for one), from
// its own goroutine, so that memory is bounded before it is used; the bytes
// are given back once the reply is written. Reserve fails with ctx's error,
// or ErrSessionClosed once the session has ended.
func (r *Request) Reserve(ctx context.Context, n int) error {
	more := int64(max(n, 0)) - r.reserved
	if more < 0 {
		r.s.charge(more)
	} else if more > 0 {
		if err := r.s.reserve(ctx, more); err != nil {
			return err
		}
	}
	r.reserved += more
	return nil
}

// AfterReply registers f to run once the handler's reply has been encoded
// and written (or has failed or been dropped), so that a handler that built
// its reply on pooled memory can give that memory back in f. The handler
// calls it before it returns; pushed replies are encoded when pushed and
// need no such hook.
func (r *Request) AfterReply(f func()) { r.afterReply = append(r.afterReply, f) }

// Order returns the request's position among the requests of the same
// command that the session read before it (0 for the first). Handlers run
// concurrently; one whose effects must keep the client's order (a write)
// waits for the requests of lower order.
func (r *Request) Order() uint64 { return r.order }

// Sequence returns the request's sequence, which every reply echoes.
func (r *Request) Sequence() int64 { return r.Msg.GetSequence() }

// Push queues a server-initiated reply carrying this request's sequence, for
// streaming commands. Pushes of a session are written in order. Push blocks
// while the session's push queue is full (the client reads slower than it is
// fed) and fails with ErrSlowConsumer if that lasts PushStallTimeout, or
// with ErrSessionClosed once the session has ended.
// Push also gives up, with ctx's error, when ctx is done.
func (r *Request) Push(ctx context.Context, resp *pb.PubSubResp) error {
	resp.Sequence = r.Msg.GetSequence()
	return r.s.enqueuePush(ctx, resp)
}

// Hold marks a stream of this request (a subscription) as live until
// release is called: a session with live streams is not closed as idle,
// since its client need not send anything while it is being pushed to.
func (r *Request) Hold() (release func()) {
	r.s.streams.Add(1)
	var once sync.Once
	return func() { once.Do(func() { r.s.streams.Add(-1) }) }
}

// Context returns the context of the request's session, canceled when the
// session ends; streaming handlers stop their pushes when it is done.
func (r *Request) Context() context.Context { return r.s.ctx }

// Serve runs one session on conn, which must be past the WebSocket handshake,
// dispatching requests to h (typically a *Mux). It returns when the session
// ends: the client closed, a protocol violation or limit closed it, or ctx was
// canceled (the client then gets a 1001 close frame). conn is closed on
// return. Serve never panics.
func Serve(ctx context.Context, conn net.Conn, h Handler, opts Options) (err error) {
	o := opts.withDefaults()
	s := &session{
		conn:     conn,
		handler:  h,
		opts:     o,
		inflight: make(chan struct{}, o.MaxInFlight),
		in:       readAhead{conn: conn},
		vectored: writesVectors(conn),
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() {
		defer func() {
			if p := recover(); p != nil {
				o.Logger.Error("pubsub: shutdown close panic", "panic", p, "stack", string(debug.Stack()))
			}
		}()
		// Unblock a writer stuck on a client that does not read, so that
		// shutdown is prompt.
		s.abandonWrites(closeLinger)
		s.closeWith(CloseGoingAway, closeReasonShutdown)
	})
	defer func() {
		if p := recover(); p != nil {
			o.Logger.Error("pubsub: session panic", "panic", p, "stack", string(debug.Stack()))
			s.closeWith(CloseInternalError, errMsgInternalFailure)
			err = fmt.Errorf("pubsub: session panic: %v", p)
		}
		stop()
		s.stopKeepalive()
		s.cancel()
		s.awaitPeerClose()
		s.conn.Close()
		s.stopPushes()
		s.handlers.Wait()
	}()
	s.startKeepalive()
	return s.readLoop()
}

// closeLinger bounds how long a session that sent a close frame waits for the
// client's close frame before closing the socket.
const closeLinger = time.Second

// awaitPeerClose reads and discards frames until the client answers a close
// frame the server sent, hangs up, or closeLinger passes. Closing a socket
// with unread input makes the kernel reset the connection, which can destroy
// the close frame before the client reads it.
func (s *session) awaitPeerClose() {
	if !s.closing.Load() || s.peerClosed {
		return
	}
	s.conn.SetReadDeadline(time.Now().Add(closeLinger))
	if s.unread < 0 { // the client's stream cannot be parsed: drain it
		io.Copy(io.Discard, &s.in)
		return
	}
	if _, err := io.CopyN(io.Discard, &s.in, s.unread); err != nil {
		return
	}
	for {
		h, err := ws.ReadHeaderBuffer(&s.in, s.hdr[:])
		if err != nil || h.OpCode == ws.OpClose {
			return
		}
		if _, err := io.CopyN(io.Discard, &s.in, h.Length); err != nil {
			return
		}
	}
}

// session is the state of one served connection. An idle session holds only
// this struct, its reader goroutine and the socket: read buffers are taken
// per message and write buffers per burst of replies.
type session struct {
	conn net.Conn
	// vectored is set when conn writes net.Buffers with one system call.
	vectored bool
	handler  Handler
	opts     Options
	ctx      context.Context
	cancel   context.CancelFunc
	inflight chan struct{}
	handlers sync.WaitGroup
	hdr      [ws.MaxHeaderSize - 2]byte
	// in is the reader goroutine's view of conn.
	in readAhead

	// Writers queue on wmu; pendingWrites counts those waiting so that only
	// the last one of a burst flushes.
	wmu           sync.Mutex
	pendingWrites atomic.Int32
	bw            *bufio.Writer
	werr          error
	// closing is set once a close frame was sent; peerClosed (reader only)
	// once the client's close frame was read.
	closing    atomic.Bool
	peerClosed bool
	// unread is the payload left unread of the frame that made the session
	// close, or -1 when the client's stream cannot be parsed (reader only).
	unread int64
	// commandsRead counts the requests read per command, for
	// Request.Order (reader only; made on first use).
	commandsRead map[protoreflect.Name]uint64

	// abandonAt, once set, is the write deadline (Unix ns) of a session
	// being closed: a write still blocked then is abandoned.
	abandonAt atomic.Int64

	streams      atomic.Int32 // live streams (Request.Hold)
	qmu          sync.Mutex
	queue        pushQueue
	slowConsumer atomic.Bool

	// pending counts the reply bytes the session holds (MaxPendingBytes).
	pending pendingBytes
	// readerBlocked is set while the reader waits for room (MaxInFlight,
	// MaxPendingBytes) instead of reading the client's frames.
	readerBlocked atomic.Bool
	keepalive     keepalive
}

var (
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}
	bufPool    = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}
)

// readLoop reads frames until the session ends.
func (s *session) readLoop() error {
	var msg *[]byte // reassembly buffer of the message being read
	defer func() {
		if msg != nil {
			putBuf(msg)
		}
	}()
	fragmented := false
	// The idle deadline moves with the client's messages and pings, not
	// with its pongs: answering the server's pings keeps no session open.
	var idle time.Time
	active := func() {
		if s.opts.IdleTimeout > 0 {
			idle = time.Now().Add(s.opts.IdleTimeout)
		}
	}
	active()
	for {
		if s.opts.IdleTimeout > 0 && !s.closing.Load() {
			s.conn.SetReadDeadline(idle)
		}
		h, err := ws.ReadHeaderBuffer(&s.in, s.hdr[:])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && s.streams.Load() > 0 && !s.closing.Load() {
				active()
				continue // a client whose streams are live has no need to speak
			}
			return s.readFailed(err)
		}
		state := ws.StateServerSide
		if fragmented {
			state = state.Set(ws.StateFragmented)
		}
		if err := ws.CheckHeader(h, state); err != nil {
			s.unread = -1
			s.closeWith(CloseProtocolError, err.Error())
			return err
		}
		if h.OpCode.IsControl() {
			if h.OpCode == ws.OpPing {
				active()
			}
			if done, err := s.control(h); done {
				return err
			}
			continue
		}
		if h.OpCode == ws.OpText {
			s.unread = h.Length
			s.closeWith(CloseUnsupportedData, "text frames are not supported; send binary protobuf")
			return errors.New("pubsub: text frame")
		}
		size := int64(0)
		if msg != nil {
			size = int64(len(*msg))
		}
		if size+h.Length > int64(s.opts.MaxFrameBytes) {
			s.unread = h.Length
			s.closeWith(CloseMessageTooBig, fmt.Sprintf("message exceeds %d bytes", s.opts.MaxFrameBytes))
			return errors.New("pubsub: message too big")
		}
		if msg == nil {
			msg = getBuf()
		}
		start := len(*msg)
		*msg = grow(*msg, int(h.Length))
		if _, err := io.ReadFull(&s.in, (*msg)[start:]); err != nil {
			return s.readFailed(err)
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
			return s.ctx.Err()
		}
		putBuf(msg)
		msg = nil
		active()
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

// dispatch decodes one message and starts its handler. It blocks while the
// session is at MaxInFlight or MaxPendingBytes, which stops reading from a
// client whose replies cannot be written. It returns false once the session
// is over.
func (s *session) dispatch(data []byte) bool {
	req := &pb.PubSubReq{}
	if err := proto.Unmarshal(data, req); err != nil {
		s.reportCommand("", errors.New(errMsgUndecodable))
		return s.writeError(0, errMsgUndecodable+": "+err.Error()) == nil
	}
	cmd := commandOf(req)
	if cmd == "" {
		s.reportCommand("", errors.New(errMsgNoCommand))
		return s.writeError(req.GetSequence(), errMsgNoCommand) == nil
	}
	s.readerBlocked.Store(true)
	defer s.readerBlocked.Store(false)
	select {
	case s.inflight <- struct{}{}:
	case <-s.ctx.Done():
		return false
	}
	s.handlers.Add(1)
	if s.commandsRead == nil {
		s.commandsRead = make(map[protoreflect.Name]uint64, 4)
	}
	order := s.commandsRead[cmd]
	s.commandsRead[cmd] = order + 1
	go s.serve(&Request{Msg: req, Command: string(cmd), s: s, order: order})
	// The next request is read only once the session's replies leave room
	// under MaxPendingBytes.
	return s.waitForPendingRoom()
}

// serve runs one handler and writes its reply.
func (s *session) serve(req *Request) {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Logger.Error("pubsub: handler panic", "command", req.Command, "panic", p, "stack", string(debug.Stack()))
			s.writeError(req.Sequence(), errMsgInternalFailure)
		}
		s.runAfterReply(req)
		s.charge(-req.reserved)
		<-s.inflight
		s.handlers.Done()
	}()
	resp, err := s.handler.ServePubSub(s.ctx, req)
	s.reportCommand(req.Command, err)
	switch {
	case err != nil:
		s.writeError(req.Sequence(), err.Error())
	case resp != nil:
		resp.Sequence = req.Sequence()
		s.writeReply(resp, req.reserved)
	}
}

// runAfterReply runs the functions the handler registered with AfterReply;
// a panic in one is logged and does not stop the others.
func (s *session) runAfterReply(req *Request) {
	for _, f := range req.afterReply {
		func() {
			defer func() {
				if p := recover(); p != nil {
					s.opts.Logger.Error("pubsub: after-reply panic", "command", req.Command, "panic", p, "stack", string(debug.Stack()))
				}
			}()
			f()
		}()
	}
}

func (s *session) reportCommand(cmd string, err error) {
	if s.opts.OnCommand != nil {
		s.opts.OnCommand(cmd, err)
	}
}

func (s *session) writeError(seq int64, msg string) error {
	return s.writeReply(&pb.PubSubResp{Sequence: seq, Resp: &pb.PubSubResp_ErrorResp{
		ErrorResp: &pb.ErrorResp{Code: 0, Message: msg},
	}}, 0)
}

// writeReply encodes resp into a pooled buffer and writes it as one binary
// message. The encoded bytes count as the session's pending reply bytes
// until written, beyond the reserved bytes the handler already holds for
// it (a reply larger than its reservation is charged without waiting: its
// records are in memory already).
func (s *session) writeReply(resp *pb.PubSubResp, reserved int64) error {
	buf := getBuf()
	defer putBuf(buf)
	b, err := proto.MarshalOptions{}.MarshalAppend((*buf)[:0], resp)
	if err != nil {
		return fmt.Errorf("pubsub: encode reply: %w", err)
	}
	*buf = b
	if extra := int64(len(b)) - reserved; extra > 0 {
		s.charge(extra)
		defer s.charge(-extra)
	}
	return s.writeFrame(ws.OpBinary, b)
}

// writeFrame writes one unfragmented frame. Writers are serialised; replies
// that queue up behind each other share one buffer and one flush.
func (s *session) writeFrame(op ws.OpCode, payload []byte) error {
	return s.write(op == ws.OpClose, func() error { return s.putFrame(op, payload) })
}

// writeFrames writes pushes back to back with one flush: the pushes queued
// for a session go out in one write, buffered when they fit the write
// buffer, else vectored (no payload copied).
func (s *session) writeFrames(frames []pushFrame) error {
	return s.write(false, func() error {
		if s.vectored && payloadBytes(frames) > s.bw.Available() {
			return s.writeVectored(frames)
		}
		for _, f := range frames {
			if err := s.putPush(f); err != nil {
				return err
			}
		}
		return nil
	})
}

// write runs put, which buffers frames, holding the write lock, and flushes
// when no other writer waits (or at once, for a close frame).
func (s *session) write(flushNow bool, put func() error) error {
	s.pendingWrites.Add(1)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	last := s.pendingWrites.Add(-1) == 0
	if s.closing.Load() {
		return ErrSessionClosed
	}
	if s.werr != nil {
		return s.werr
	}
	if s.bw == nil {
		s.bw = writerPool.Get().(*bufio.Writer)
		s.bw.Reset(s.conn)
	}
	if s.opts.WriteTimeout > 0 {
		s.conn.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
	}
	// Checked after the deadline is set: abandonWrites sets its own
	// deadline after it marks the session, so one of the two wins.
	if at := s.abandonAt.Load(); at != 0 {
		s.conn.SetWriteDeadline(time.Unix(0, at))
	}
	err := put()
	if err == nil && (last || flushNow) {
		err = s.releaseWriter()
	}
	if err != nil {
		s.failWrites(err)
	}
	return err
}

// putFrame buffers one frame. Callers hold wmu.
func (s *session) putFrame(op ws.OpCode, payload []byte) error {
	if err := ws.WriteHeader(s.bw, ws.Header{Fin: true, OpCode: op, Length: int64(len(payload))}); err != nil {
		return err
	}
	_, err := s.bw.Write(payload)
	return err
}

// releaseWriter flushes the buffered writer and returns it to the pool.
// Callers hold wmu.
func (s *session) releaseWriter() error {
	err := s.bw.Flush()
	s.bw.Reset(nil)
	writerPool.Put(s.bw)
	s.bw = nil
	return err
}

// failWrites records a write failure and closes the connection, which ends
// the reader too. Callers hold wmu.
func (s *session) failWrites(err error) {
	s.werr = err
	if s.bw != nil {
		s.bw.Reset(nil)
		writerPool.Put(s.bw)
		s.bw = nil
	}
	s.conn.Close()
	if errors.Is(err, os.ErrDeadlineExceeded) && s.abandonAt.Load() == 0 {
		s.opts.Logger.Warn("pubsub: closing session: client does not read its replies", "remote", s.conn.RemoteAddr())
	}
}

// abandonWrites gives a write blocked on a client that does not read until
// grace from now, then fails it, which closes the connection; writes that
// start later get the same deadline. A session that is being closed calls
// it so that its close does not wait for write_timeout: the close frame
// follows if the blocked write ends in time.
func (s *session) abandonWrites(grace time.Duration) {
	at := time.Now().Add(grace)
	s.abandonAt.CompareAndSwap(0, at.UnixNano())
	s.conn.SetWriteDeadline(time.Unix(0, s.abandonAt.Load()))
}

// closeAbandoning closes the session with code and reason without waiting
// for a write blocked on the client beyond closeGrace: its handlers stop at
// once, and the close frame follows the frame being written if the client
// takes it in time; otherwise the connection is closed without one. It runs
// in a goroutine of its own.
func (s *session) closeAbandoning(code ws.StatusCode, reason string) {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Logger.Error("pubsub: close panic", "panic", p, "stack", string(debug.Stack()))
		}
	}()
	s.cancel()
	s.abandonWrites(closeGrace)
	s.closeWith(code, reason)
}

// closeGrace is how long a session closed for a stalled or silent client
// lets a write in progress finish before abandoning it.
const closeGrace = 500 * time.Millisecond

// closeWith sends a close frame with code and reason (once), ends the
// session's handlers and leaves closeLinger for the client's answer. Later
// writes fail with ErrSessionClosed.
func (s *session) closeWith(code ws.StatusCode, reason string) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closing.Swap(true) {
		return
	}
	if s.werr == nil {
		if s.bw == nil {
			s.bw = writerPool.Get().(*bufio.Writer)
			s.bw.Reset(s.conn)
		}
		s.conn.SetWriteDeadline(time.Now().Add(time.Second))
		body := ws.NewCloseFrameBody(code, reason)
		if ws.WriteHeader(s.bw, ws.Header{Fin: true, OpCode: ws.OpClose, Length: int64(len(body))}) == nil {
			s.bw.Write(body)
		}
		s.releaseWriter()
	} else if s.bw != nil {
		s.bw.Reset(nil)
		writerPool.Put(s.bw)
		s.bw = nil
	}
	s.cancel()
	s.conn.SetReadDeadline(time.Now().Add(closeLinger))
}

// readAheadSize is the read-ahead of a session: a typical request (frame
// header and a fetch command of a few dozen bytes) arrives in one read.
const readAheadSize = 128

// readAhead reads the client's bytes in chunks of readAheadSize, so that a
// small request costs one read system call rather than one per frame header
// part and payload. Large payloads are read straight into their buffer. Only
// the session's reader goroutine uses it.
type readAhead struct {
	conn     net.Conn
	buf      [readAheadSize]byte
	pos, end int
}

// Read implements io.Reader, serving read-ahead bytes first.
func (r *readAhead) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // never block for nothing
	}
	if r.pos == r.end {
		if len(p) >= len(r.buf) {
			return r.conn.Read(p)
		}
		n, err := r.conn.Read(r.buf[:])
		if n == 0 {
			return 0, err
		}
		// A read error that came with data shows again on the next read.
		r.pos, r.end = 0, n
	}
	n := copy(p, r.buf[r.pos:r.end])
	r.pos += n
	return n, nil
}

func getBuf() *[]byte {
	b := bufPool.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// maxPooledBuffer is the largest buffer the pool keeps: a full fetch reply
// (1 MiB of records by default, a little more once encoded) must be reused,
// not allocated anew for every fetch.
const maxPooledBuffer = 4 << 20

// putBuf returns b to the pool unless it grew too large to keep.
func putBuf(b *[]byte) {
	if cap(*b) <= maxPooledBuffer {
		bufPool.Put(b)
	}
}

// grow extends b by n bytes, reallocating when needed.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b[:len(b)+n]
	}
	nb := make([]byte, len(b)+n, max(2*cap(b), len(b)+n))
	copy(nb, b)
	return nb
}
