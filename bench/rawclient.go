package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/envoy-pubsub/gateway/client"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// rawClient is a lean APISIX-style client for measuring the gateway: one
// request at a time, requests encoded and replies walked field by field with
// protowire into buffers it reuses, so that the client process costs little
// next to the gateway. It reads only what a consumer needs: offsets and
// values of fetched records, the offset of list offset, error messages.
type rawClient struct {
	conn net.Conn
	in   *bufio.Reader
	seq  uint64
	req  []byte // encoded request being sent
	out  []byte // masked frame being sent
	resp []byte // payload of the last reply
}

// PubSubReq and PubSubResp field numbers (PROTOCOL.md).
const (
	fieldSequence           = 1
	fieldCmdPing            = 32
	fieldCmdKafkaFetch      = 33
	fieldCmdKafkaListOffset = 34
	fieldErrorResp          = 31
	fieldPongResp           = 32
	fieldKafkaFetchResp     = 33
	fieldKafkaListOffset    = 34
)

func dialRaw(ctx context.Context, url string) (*rawClient, error) {
	conn, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	c := &rawClient{conn: conn, in: bufio.NewReaderSize(conn, 64<<10)}
	if br != nil {
		// Bytes the handshake read past the response come first.
		c.in = bufio.NewReaderSize(io.MultiReader(br, conn), 64<<10)
	}
	return c, nil
}

// Close closes the connection without a close handshake.
func (c *rawClient) Close() error { return c.conn.Close() }

// errServer is an error_resp from the gateway.
type errServer struct{ message string }

// Error returns the error_resp message.
func (e *errServer) Error() string { return e.message }

// roundTrip sends the command field (already encoded in cmd) with a fresh
// sequence and returns the reply's field of number want.
func (c *rawClient) roundTrip(cmdField protowire.Number, cmd []byte, want protowire.Number) ([]byte, error) {
	c.seq++
	c.req = protowire.AppendTag(c.req[:0], fieldSequence, protowire.VarintType)
	c.req = protowire.AppendVarint(c.req, c.seq)
	c.req = protowire.AppendTag(c.req, cmdField, protowire.BytesType)
	c.req = protowire.AppendBytes(c.req, cmd)
	if err := c.send(c.req); err != nil {
		return nil, err
	}
	for {
		body, seq, field, err := c.receive()
		if err != nil {
			return nil, err
		}
		if seq != c.seq {
			continue // a late reply of an earlier request
		}
		switch field {
		case want:
			return body, nil
		case fieldErrorResp:
			return nil, &errServer{message: errorMessage(body)}
		default:
			return nil, fmt.Errorf("reply field %d, want %d", field, want)
		}
	}
}

// send writes payload as one masked binary frame.
func (c *rawClient) send(payload []byte) error {
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: ws.NewMask(), Length: int64(len(payload))}
	c.out = appendHeader(c.out[:0], h)
	start := len(c.out)
	c.out = append(c.out, payload...)
	ws.Cipher(c.out[start:], h.Mask, 0)
	_, err := c.conn.Write(c.out)
	return err
}

// appendHeader appends the encoding of h to b.
func appendHeader(b []byte, h ws.Header) []byte {
	var w sliceWriter
	w.b = b
	ws.WriteHeader(&w, h)
	return w.b
}

// sliceWriter is an io.Writer appending to b.
type sliceWriter struct{ b []byte }

// Write appends p.
func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// receive reads the next binary frame and returns the body of its reply
// field with the reply's sequence.
func (c *rawClient) receive() (body []byte, seq uint64, field protowire.Number, err error) {
	for {
		h, err := ws.ReadHeader(c.in)
		if err != nil {
			return nil, 0, 0, err
		}
		if int64(cap(c.resp)) < h.Length {
			c.resp = make([]byte, h.Length)
		}
		c.resp = c.resp[:h.Length]
		if _, err := io.ReadFull(c.in, c.resp); err != nil {
			return nil, 0, 0, err
		}
		switch h.OpCode {
		case ws.OpBinary:
		case ws.OpClose:
			return nil, 0, 0, errors.New("gateway closed the session")
		default:
			continue // control frames the gateway does not send unasked
		}
		err = walk(c.resp, func(n protowire.Number, v uint64, b []byte) error {
			if n == fieldSequence {
				seq = v
			} else if n >= fieldErrorResp {
				field, body = n, b
			}
			return nil
		})
		return body, seq, field, err
	}
}

// walk calls f for each field of msg with its varint value or bytes.
func walk(msg []byte, f func(n protowire.Number, v uint64, b []byte) error) error {
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return protowire.ParseError(l)
		}
		msg = msg[l:]
		var (
			v uint64
			b []byte
		)
		switch typ {
		case protowire.VarintType:
			v, l = protowire.ConsumeVarint(msg)
		case protowire.BytesType:
			b, l = protowire.ConsumeBytes(msg)
		default:
			l = protowire.ConsumeFieldValue(n, typ, msg)
		}
		if l < 0 {
			return protowire.ParseError(l)
		}
		msg = msg[l:]
		if err := f(n, v, b); err != nil {
			return err
		}
	}
	return nil
}

func errorMessage(errorResp []byte) string {
	msg := "error_resp"
	walk(errorResp, func(n protowire.Number, _ uint64, b []byte) error {
		if n == 2 {
			msg = string(b)
		}
		return nil
	})
	return msg
}

// ping runs cmd_ping.
func (c *rawClient) ping() error {
	_, err := c.roundTrip(fieldCmdPing, nil, fieldPongResp)
	return err
}

// listOffset runs cmd_kafka_list_offset.
func (c *rawClient) listOffset(topic string, partition int32, timestamp int64) (int64, error) {
	cmd := appendPartitionCmd(nil, topic, partition, timestamp)
	body, err := c.roundTrip(fieldCmdKafkaListOffset, cmd, fieldKafkaListOffset)
	if err != nil {
		return 0, err
	}
	var offset int64
	err = walk(body, func(n protowire.Number, v uint64, _ []byte) error {
		if n == 1 {
			offset = int64(v)
		}
		return nil
	})
	return offset, err
}

// fetch runs cmd_kafka_fetch and calls record for each record of the reply,
// in order. value is valid only during the call.
func (c *rawClient) fetch(topic string, partition int32, offset int64, record func(offset int64, value []byte) error) error {
	cmd := appendPartitionCmd(nil, topic, partition, offset)
	body, err := c.roundTrip(fieldCmdKafkaFetch, cmd, fieldKafkaFetchResp)
	if err != nil {
		return err
	}
	return eachRecord(body, record)
}

// appendPartitionCmd encodes CmdKafkaFetch or CmdKafkaListOffset, which
// share their layout: topic = 1, partition = 2, offset or timestamp = 3.
func appendPartitionCmd(b []byte, topic string, partition int32, position int64) []byte {
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, topic)
	b = protowire.AppendTag(b, 2, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(partition))
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(position))
}

// sessionClient is what the measurements need of a client session; the raw
// client and the project's client package both provide it.
type sessionClient interface {
	ping() error
	listOffset(topic string, partition int32, timestamp int64) (int64, error)
	// fetch calls record for each fetched record, in order; value is valid
	// only during the call.
	fetch(topic string, partition int32, offset int64, record func(offset int64, value []byte) error) error
	Close() error
}

// Clients the benchmark can drive sessions with.
const (
	// ClientProto decodes every reply with the generated protobuf code
	// into a new PubSubResp, as an application does (the default).
	ClientProto = "proto"
	// ClientRaw walks replies with protowire into reused buffers: the
	// least a client can do, which shows the gateway's own limit.
	ClientRaw = "raw"
	// ClientGo is the project's client package.
	ClientGo = "go"
)

// dialSession opens one session with the client kind.
func dialSession(ctx context.Context, kind, url string) (sessionClient, error) {
	switch kind {
	case ClientProto, "":
		c, err := dialRaw(ctx, url)
		if err != nil {
			return nil, err
		}
		return &protoClient{c}, nil
	case ClientRaw:
		return dialRaw(ctx, url)
	case ClientGo:
		c, err := client.Dial(ctx, url, client.Options{})
		if err != nil {
			return nil, err
		}
		return &goClient{ctx: ctx, c: c}, nil
	}
	return nil, fmt.Errorf("unknown client %q (want %s, %s or %s)", kind, ClientProto, ClientRaw, ClientGo)
}

// protoClient is the raw client's framing with every fetch reply decoded
// by the generated protobuf code into a new message, values copied, as an
// application decodes what it receives.
type protoClient struct{ *rawClient }

func (c *protoClient) fetch(topic string, partition int32, offset int64, record func(offset int64, value []byte) error) error {
	cmd := appendPartitionCmd(nil, topic, partition, offset)
	if _, err := c.roundTrip(fieldCmdKafkaFetch, cmd, fieldKafkaFetchResp); err != nil {
		return err
	}
	resp := &pb.PubSubResp{}
	if err := proto.Unmarshal(c.resp, resp); err != nil {
		return fmt.Errorf("decode fetch reply: %w", err)
	}
	for _, m := range resp.GetKafkaFetchResp().GetMessages() {
		if err := record(m.GetOffset(), m.GetValue()); err != nil {
			return err
		}
	}
	return nil
}

// goClient drives a session with the project's client package.
type goClient struct {
	ctx context.Context
	c   *client.Client
}

func (g *goClient) ping() error {
	_, err := g.c.Ping(g.ctx, nil)
	return err
}

func (g *goClient) listOffset(topic string, partition int32, timestamp int64) (int64, error) {
	return g.c.ListOffset(g.ctx, topic, partition, timestamp)
}

func (g *goClient) fetch(topic string, partition int32, offset int64, record func(offset int64, value []byte) error) error {
	msgs, err := g.c.Fetch(g.ctx, topic, partition, offset)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := record(m.GetOffset(), m.GetValue()); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the session with a close frame.
func (g *goClient) Close() error { return g.c.Close() }
