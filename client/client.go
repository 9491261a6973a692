// Package client is a Go client of the pub-sub protocol: it dials a
// WebSocket endpoint and runs requests with sequence matching, so many
// requests may be in flight at once on one connection.
package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// ServerError is an error_resp from the server.
type ServerError struct {
	Code    int32
	Message string
}

func (e *ServerError) Error() string { return e.Message }

// ErrClosed is returned for requests on a closed client.
var ErrClosed = errors.New("client: connection closed")

// CloseError reports that the server closed the connection with a code.
type CloseError = wsutil.ClosedError

// Options configure Dial.
type Options struct {
	// Header is sent with the upgrade request.
	Header http.Header
	// TLSConfig is used for wss:// URLs.
	TLSConfig *tls.Config
	// NetDial, if set, opens the connection (e.g. to a unix socket).
	NetDial func(ctx context.Context, network, addr string) (net.Conn, error)
	// PushBufferBytes is how many bytes of subscription pushes the client
	// holds for readers that have not taken them before it stops reading
	// the connection (only while no request waits for a reply: see
	// Subscription.C). Default: 4 MiB.
	PushBufferBytes int
	// MaxPushBufferBytes bounds what the client holds while requests wait
	// for replies, which may be behind pushes: past it, the connection ends
	// with ErrPushBufferFull. Default: 64 MiB, at least PushBufferBytes.
	MaxPushBufferBytes int
	// PingInterval, if positive, makes the client send a WebSocket ping
	// this often. A server that sends nothing within PongTimeout of a ping
	// is taken for dead: the connection is closed and Err returns
	// ErrPingTimeout. The client always answers the server's pings.
	PingInterval time.Duration
	// PongTimeout is how long the client waits for the server after a ping.
	// Default: PingInterval.
	PongTimeout time.Duration
	// Token, if set, is sent at the upgrade as Authorization: Bearer
	// (replacing any Authorization of Header). Refresh it with Auth.
	Token string
}

// ErrPingTimeout is the end of a connection whose server did not answer a
// ping within Options.PongTimeout.
var ErrPingTimeout = errors.New("client: server did not answer a ping")

// Client is one pub-sub connection. It is safe for concurrent use.
type Client struct {
	conn net.Conn
	rd   io.Reader
	wmu  sync.Mutex

	mu      sync.Mutex
	seq     int64
	pending map[int64]chan *pb.PubSubResp
	subs    map[int64]*Subscription
	// unmatched receives replies whose sequence no request waits for
	// (e.g. sequence 0 errors for undecodable frames).
	unmatched chan *pb.PubSubResp
	err       error
	done      chan struct{}
	// heard counts the frames read from the server; delivering is set while
	// the reader pauses for subscription readers to take pushes (and reads
	// nothing).
	heard      atomic.Int64
	delivering atomic.Bool
	// pushes counts the bytes subscriptions hold for their readers.
	pushes pushBuffer
}

// Dial connects to url (ws:// or wss://) and starts reading replies. A
// refused upgrade is a *HandshakeError with the server's reason.
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	d := ws.Dialer{TLSConfig: opts.TLSConfig, NetDial: opts.NetDial}
	if h := upgradeHeader(opts); h != nil {
		d.Header = ws.HandshakeHeaderHTTP(h)
	}
	var refused *HandshakeError
	d.OnStatusError = func(status int, _ []byte, resp io.Reader) { refused = readRefusal(status, resp) }
	conn, br, _, err := d.Dial(ctx, url)
	if refused != nil {
		err = refused
	}
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", url, err)
	}
	c := newClient(conn, br, opts)
	if opts.PingInterval > 0 {
		timeout := opts.PongTimeout
		if timeout <= 0 {
			timeout = opts.PingInterval
		}
		go c.keepalive(opts.PingInterval, timeout)
	}
	return c, nil
}

// keepalive pings the server every interval and closes the connection with
// ErrPingTimeout when nothing comes back within timeout of a ping.
func (c *Client) keepalive(interval, timeout time.Duration) {
	defer func() {
		if p := recover(); p != nil {
			c.fail(fmt.Errorf("client: keepalive panic: %v", p))
		}
	}()
	ping := time.NewTicker(interval)
	defer ping.Stop()
	check := time.NewTimer(timeout)
	check.Stop()
	defer check.Stop()
	var (
		deadline <-chan time.Time // the pong deadline of the ping out, if any
		heard    int64
	)
	for {
		select {
		case <-c.done:
			return
		case <-ping.C:
			if deadline != nil && c.heard.Load() == heard {
				continue // the last ping is still unanswered
			}
			heard = c.heard.Load()
			if c.SendRaw(ws.OpPing, nil) != nil {
				return
			}
			check.Reset(timeout)
			deadline = check.C
		case <-deadline:
			switch {
			case c.heard.Load() != heard:
				deadline = nil
			case c.delivering.Load():
				// The reader waits for the application to take pushes;
				// it reads no pong meanwhile.
				check.Reset(timeout)
			default:
				c.fail(ErrPingTimeout)
				return
			}
		}
	}
}

// fail ends the connection with err as its reason.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.pushes.stop()
	c.conn.Close()
}

// New runs a client on conn, which is past the handshake; br holds bytes the
// handshake read beyond the response (it may be nil). The options of Dial
// have their defaults.
func New(conn net.Conn, br *bufio.Reader) *Client { return newClient(conn, br, Options{}) }

// newClient is New with the push buffer of opts.
func newClient(conn net.Conn, br *bufio.Reader, opts Options) *Client {
	c := &Client{
		conn:      conn,
		rd:        conn,
		pending:   make(map[int64]chan *pb.PubSubResp),
		subs:      make(map[int64]*Subscription),
		unmatched: make(chan *pb.PubSubResp, unmatchedBuffer),
		done:      make(chan struct{}),
	}
	c.pushes.init(opts)
	if br != nil && br.Buffered() > 0 {
		c.rd = io.MultiReader(br, conn)
	}
	go c.readLoop()
	return c
}

// Do sends req with a fresh sequence and waits for its reply. An error_resp
// comes back as a *ServerError.
func (c *Client) Do(ctx context.Context, req *pb.PubSubReq) (*pb.PubSubResp, error) {
	return c.do(ctx, req, nil)
}

// do is Do that, when sub is not nil, registers sub for the replies after
// the first one.
func (c *Client) do(ctx context.Context, req *pb.PubSubReq, sub *Subscription) (*pb.PubSubResp, error) {
	ch := make(chan *pb.PubSubResp, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.seq++
	req.Sequence = c.seq
	c.pending[req.Sequence] = ch
	if sub != nil {
		sub.Sequence = req.Sequence
		c.subs[req.Sequence] = sub
	}
	c.mu.Unlock()
	c.pushes.wake() // a reader that paused for a full push buffer reads on
	defer func() {
		c.mu.Lock()
		delete(c.pending, req.Sequence)
		c.mu.Unlock()
	}()
	if err := c.Send(req); err != nil {
		return nil, err
	}
	select {
	case resp := <-ch:
		if e := resp.GetErrorResp(); e != nil {
			return resp, &ServerError{Code: e.GetCode(), Message: e.GetMessage()}
		}
		return resp, nil
	case <-c.done:
		return nil, c.Err()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Send writes req as is, without waiting for a reply.
func (c *Client) Send(req *pb.PubSubReq) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return fmt.Errorf("client: encode: %w", err)
	}
	return c.SendRaw(ws.OpBinary, b)
}

// SendRaw writes one masked frame with any opcode and payload (tests use it
// to send what a well-behaved client would not).
func (c *Client) SendRaw(op ws.OpCode, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := wsutil.WriteClientMessage(c.conn, op, payload); err != nil {
		return fmt.Errorf("client: write: %w", err)
	}
	return nil
}

// unmatchedBuffer is how many replies Unmatched holds unread; further ones
// are dropped, since the connection's reader never waits for them.
const unmatchedBuffer = 64

// Unmatched returns replies that answer no pending request of this client
// (up to 64 unread ones are held; more are dropped).
func (c *Client) Unmatched() <-chan *pb.PubSubResp { return c.unmatched }

// Done is closed when the connection ends; Err then says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended: a CloseError when the server sent a
// close frame, or the read error.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close sends a normal close frame and closes the connection.
func (c *Client) Close() error {
	c.wmu.Lock()
	wsutil.WriteClientMessage(c.conn, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	c.wmu.Unlock()
	c.pushes.stop()
	err := c.conn.Close()
	<-c.done
	return err
}

// Ping sends cmd_ping and returns the state echoed in pong_resp.
func (c *Client) Ping(ctx context.Context, state []byte) ([]byte, error) {
	resp, err := c.Do(ctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdPing{CmdPing: &pb.CmdPing{State: state}}})
	if err != nil {
		return nil, err
	}
	if resp.GetPongResp() == nil {
		return nil, fmt.Errorf("client: unexpected reply %v", resp)
	}
	return resp.GetPongResp().GetState(), nil
}

// ListOffset runs cmd_kafka_list_offset: timestamp -2 earliest, -1 latest,
// otherwise the first offset at or after timestamp (ms).
func (c *Client) ListOffset(ctx context.Context, topic string, partition int32, timestamp int64) (int64, error) {
	resp, err := c.Do(ctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaListOffset{
		CmdKafkaListOffset: &pb.CmdKafkaListOffset{Topic: topic, Partition: partition, Timestamp: timestamp},
	}})
	if err != nil {
		return 0, err
	}
	if resp.GetKafkaListOffsetResp() == nil {
		return 0, fmt.Errorf("client: unexpected reply %v", resp)
	}
	return resp.GetKafkaListOffsetResp().GetOffset(), nil
}

// Fetch runs cmd_kafka_fetch and returns the records from offset on.
func (c *Client) Fetch(ctx context.Context, topic string, partition int32, offset int64) ([]*pb.KafkaMessage, error) {
	resp, err := c.FetchReply(ctx, &pb.CmdKafkaFetch{Topic: topic, Partition: partition, Offset: offset})
	if err != nil {
		return nil, err
	}
	return resp.GetMessages(), nil
}

// FetchReply runs cmd (with its filter, if any) and returns the whole
// reply: the records and next_offset, the offset to ask for next.
func (c *Client) FetchReply(ctx context.Context, cmd *pb.CmdKafkaFetch) (*pb.KafkaFetchResp, error) {
	resp, err := c.Do(ctx, &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaFetch{CmdKafkaFetch: cmd}})
	if err != nil {
		return nil, err
	}
	if resp.GetKafkaFetchResp() == nil {
		return nil, fmt.Errorf("client: unexpected reply %v", resp)
	}
	return resp.GetKafkaFetchResp(), nil
}

// readLoop delivers replies to their requests until the connection ends.
func (c *Client) readLoop() {
	var err error
	defer func() {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		if c.err == nil {
			c.err = ErrClosed
		}
		subs := c.subs
		c.subs = map[int64]*Subscription{}
		c.mu.Unlock()
		close(c.done)
		for _, sub := range subs {
			sub.end()
		}
	}()
	control := wsutil.ControlFrameHandler(lockedWriter{c}, ws.StateClientSide)
	rd := wsutil.DefaultReader(c.rd, ws.StateClientSide)
	rd.OnIntermediate = func(h ws.Header, r io.Reader) error {
		c.heard.Add(1)
		return control(h, r)
	}
	var buf bytes.Buffer
	for {
		var h ws.Header
		if h, err = rd.NextFrame(); err != nil {
			return
		}
		if h.OpCode.IsControl() {
			if err = rd.OnIntermediate(h, rd); err != nil {
				return
			}
			continue
		}
		c.heard.Add(1)
		if h.OpCode != ws.OpBinary {
			if err = rd.Discard(); err != nil {
				return
			}
			continue
		}
		buf.Reset()
		if _, err = buf.ReadFrom(rd); err != nil {
			return
		}
		data := buf.Bytes()
		resp := &pb.PubSubResp{}
		if err = proto.Unmarshal(data, resp); err != nil {
			err = fmt.Errorf("client: decode reply: %w", err)
			return
		}
		c.mu.Lock()
		seq := resp.GetSequence()
		ch, sub := c.pending[seq], c.subs[seq]
		delete(c.pending, seq) // one reply per request; more go to sub
		c.mu.Unlock()
		switch {
		case ch != nil:
			ch <- resp
		case sub != nil:
			if err = c.deliver(sub, resp, len(data)); err != nil {
				return
			}
		default:
			select {
			case c.unmatched <- resp:
			default:
			}
		}
	}
}

// lockedWriter serialises the control replies (pong, close) that the reader
// writes with the client's own writes.
type lockedWriter struct{ c *Client }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.c.wmu.Lock()
	defer w.c.wmu.Unlock()
	return w.c.conn.Write(p)
}
