package pubsub

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub/internal/netpoll"
)

// Serve runs one session on conn, which must be past the WebSocket handshake,
// dispatching requests to h (typically a *Mux). It returns when the session
// ends: the client closed, a protocol violation or limit closed it, or ctx was
// canceled (the client then gets a 1001 close frame). conn is closed on
// return. Serve never panics.
func Serve(ctx context.Context, conn net.Conn, h Handler, opts Options) error {
	ended := make(chan error, 1)
	Start(ctx, conn, h, opts, func(err error) { ended <- err })
	return <-ended
}

// Start runs one session on conn as Serve does, but returns at once; onEnd
// (if not nil) is called with what Serve would return once the session has
// ended and conn is closed. A session whose client sends nothing holds no
// goroutine when conn has a file descriptor (TCP and unix sockets, on
// Linux): the poller of package netpoll starts its reader when the client
// sends again. Other connections (net.Pipe, TLS) are read by a goroutine of
// their own for the whole session.
func Start(ctx context.Context, conn net.Conn, h Handler, opts Options, onEnd func(error)) {
	start(ctx, conn, h, opts, onEnd)
}

// start starts the session Start serves and returns it.
func start(ctx context.Context, conn net.Conn, h Handler, opts Options, onEnd func(error)) *session {
	o := opts.withDefaults()
	s := &session{
		conn:     conn,
		handler:  h,
		opts:     &o,
		in:       readAhead{conn: conn, metrics: o.Metrics},
		vectored: writesVectors(conn),
		raw:      rawConnOf(conn),
		onEnd:    onEnd,
	}
	if w, err := netpoll.New(conn, s.onReadable); err == nil {
		s.watch = w
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.stopOnCancel = context.AfterFunc(ctx, func() {
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
	s.active()
	s.startTimer()
	if o.Deadline != nil {
		s.unbindDeadline = o.Deadline.bind(s.closeAbandoning, s.logPanic("deadline"))
	}
	go s.read()
	return s
}

// read runs the session's reader until it ends the session, or parks it
// (the poller starts read again when the client sends).
func (s *session) read() {
	var (
		parked bool
		err    error
	)
	defer func() {
		if p := recover(); p != nil {
			s.opts.Logger.Error("pubsub: session panic", "panic", p, "stack", string(debug.Stack()))
			s.closeWith(CloseInternalError, errMsgInternalFailure)
			parked, err = false, fmt.Errorf("pubsub: session panic: %v", p)
		}
		if !parked { // a parked session is another reader's from now on
			s.finish(err)
		}
	}()
	parked, err = s.readLoop()
}

// finish ends a session whose reader returned err: it stops what the
// session started, leaves the client time to answer a close frame, closes
// the connection, waits for the handlers and reports the end.
func (s *session) finish(err error) {
	if s.unbindDeadline != nil {
		s.unbindDeadline()
	}
	s.stopOnCancel()
	s.stopTimer()
	s.cancel()
	s.awaitPeerClose()
	s.in.release()
	if s.watch != nil {
		s.watch.Close()
	}
	s.conn.Close()
	s.stopPushes()
	s.handlers.Wait()
	s.reportEnd(err)
	if s.onEnd != nil {
		defer func() {
			if p := recover(); p != nil {
				s.opts.Logger.Error("pubsub: session end callback panic", "panic", p, "stack", string(debug.Stack()))
			}
		}()
		s.onEnd(err)
	}
}

// session is the state of one served connection. An idle session holds only
// this struct, its timers and the socket (and, without a poller, its reader
// goroutine): the read-ahead is taken while a reader runs, message buffers
// per message and write buffers per burst of replies.
type session struct {
	conn net.Conn
	// watch, if the connection has a file descriptor, starts the reader
	// when the client sends to a session whose reader parked.
	watch *netpoll.Watch
	// readState is readRunning while a goroutine reads the client, or
	// readParked while the watch waits for its input.
	readState atomic.Int32
	// idleAt is when the session idles out (Unix ns; 0: never), which the
	// reader moves with the client's messages; the keepalive's timer
	// enforces it while the reader is parked.
	idleAt         atomic.Int64
	onEnd          func(error)
	stopOnCancel   func() bool
	unbindDeadline func()
	// connFailed is set once a failed write closed the connection.
	connFailed atomic.Bool
	// vectored is set when conn writes net.Buffers with one system call.
	vectored bool
	// raw, for TCP and unix sockets, writes pushes without blocking
	// (writeNow); lastPushWrite is when pushes were last written (monoNow).
	raw           syscall.RawConn
	lastPushWrite atomic.Int64
	handler       Handler
	// opts are the session's options with their defaults filled in; they
	// do not change.
	opts   *Options
	ctx    context.Context
	cancel context.CancelFunc
	// inflight holds a token per running handler (MaxInFlight); the reader
	// makes it when it reads the first request.
	inflight chan struct{}
	handlers sync.WaitGroup
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
	// Request.Order (reader only): a session uses a few of the protocol's
	// commands, and a slice of them costs an idle session less than a map.
	commandsRead []commandCount

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

	// closeCode and closeReason are those of the close frame sent (wmu);
	// written counts the bytes written to conn (wmu).
	closeCode   ws.StatusCode
	closeReason string
	written     int64
}

// Error replies the engine itself sends.
const (
	errMsgNoCommand       = "invalid request: no command"
	errMsgUndecodable     = "invalid request: cannot decode PubSubReq"
	errMsgInternalFailure = "internal error"
)

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
	if s.inflight == nil {
		s.inflight = make(chan struct{}, s.opts.MaxInFlight)
	}
	s.readerBlocked.Store(true)
	defer s.readerBlocked.Store(false)
	select {
	case s.inflight <- struct{}{}:
	default:
		// At MaxInFlight. (Done is asked for only here: a context makes
		// its channel when first asked.)
		select {
		case s.inflight <- struct{}{}:
		case <-s.ctx.Done():
			return false
		}
	}
	s.handlers.Add(1)
	order := s.countCommand(cmd)
	go s.serve(&Request{Msg: req, Command: string(cmd), s: s, order: order})
	// The next request is read only once the session's replies leave room
	// under MaxPendingBytes.
	return s.waitForPendingRoom()
}

// commandCount is how many requests of one command a session read.
type commandCount struct {
	command protoreflect.Name
	read    uint64
}

// countCommand counts a request of cmd read and returns how many were read
// before it.
func (s *session) countCommand(cmd protoreflect.Name) uint64 {
	for i := range s.commandsRead {
		if c := &s.commandsRead[i]; c.command == cmd {
			c.read++
			return c.read - 1
		}
	}
	s.commandsRead = append(s.commandsRead, commandCount{cmd, 1})
	return 0
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
	case req.body != nil:
		s.writeBody(req.Sequence(), req.body, req.reserved)
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
