package pubsub

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"sync/atomic"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/encoding/protowire"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// ReplyBody is a reply that a handler encodes itself, straight from its own
// data, instead of building a *pb.PubSubResp for the engine to marshal: a
// reply of many small parts (the records of a fetch) then costs no message
// per part and no reflection. The engine knows its size before it encodes
// it, so the reply budgets count it as they count a marshalled reply. A
// handler answers with one through Request.ReplyWith, pushes one with
// Request.PushBody, or encodes one for many sessions with EncodeBody.
type ReplyBody interface {
	// BodySize returns the number of bytes AppendBody appends; the reply
	// budgets count the reply as that size.
	BodySize() int
	// AppendBody appends to b the PubSubResp the body stands for, without
	// its sequence (which the engine writes before it), exactly as
	// proto.Marshal encodes that PubSubResp with sequence 0, and returns
	// the extended slice. It must not fail: a body that cannot be encoded
	// is refused when it is made, before the handler answers with it.
	AppendBody(b []byte) []byte
}

// EncodedReply is a reply encoded once for many sessions. A streaming
// command whose pushes many sessions receive (the records of a partition,
// to all its subscribers) encodes each push once with EncodeBody and pushes
// it to every session with Request.PushEncoded: a session adds only its
// sequence and frame header, and no session copies the body. An
// EncodedReply is read-only and safe for concurrent use.
type EncodedReply struct {
	// body is the PubSubResp without its sequence.
	body []byte
	// queued counts the sessions whose push queue holds it: its bytes count
	// once under the process's memory budget, while any does.
	queued atomic.Int64
}

// EncodeBody encodes body once, for pushes to many sessions.
func EncodeBody(body ReplyBody) *EncodedReply {
	return &EncodedReply{body: body.AppendBody(make([]byte, 0, body.BodySize()))}
}

// Len returns the encoded size of the reply without its sequence.
func (e *EncodedReply) Len() int { return len(e.body) }

// PushEncoded is Push for a reply encoded once with EncodeBody: the client
// receives exactly what Push of the same reply would send. It blocks and
// fails as Push does.
func (r *Request) PushEncoded(ctx context.Context, e *EncodedReply) error {
	return r.pushEncoded(ctx, e, true)
}

// TryPushEncoded is PushEncoded without waiting: when the session's push
// queue has no room for e now, it queues nothing and reports false. A
// fan-out that serves many sessions from one goroutine uses it, and leaves
// the sessions without room to goroutines of their own.
func (r *Request) TryPushEncoded(e *EncodedReply) (queued bool, err error) {
	err = r.pushEncoded(r.s.ctx, e, false)
	if errors.Is(err, errNoRoom) {
		return false, nil
	}
	return err == nil, err
}

func (r *Request) pushEncoded(ctx context.Context, e *EncodedReply, wait bool) error {
	seq := r.Msg.GetSequence()
	return r.s.enqueue(ctx, sequenceSize(seq)+len(e.body), wait, func() (pushFrame, error) {
		return pushFrame{shared: e, seq: seq}, nil
	})
}

// PushBody is Push for a body the handler encodes itself: the body is
// encoded into a pooled buffer once the session's push queue has room for
// it, before PushBody returns, so that the data it is encoded from may be
// reused then. It blocks and fails as Push does.
func (r *Request) PushBody(ctx context.Context, body ReplyBody) error {
	seq := r.Msg.GetSequence()
	size := sequenceSize(seq) + body.BodySize()
	return r.s.enqueue(ctx, size, true, func() (pushFrame, error) {
		return pushFrame{own: encodeBody(seq, body, size)}, nil
	})
}

// encodeBody encodes the reply of sequence seq whose body is body, of size
// bytes in all, into a pooled buffer.
func encodeBody(seq int64, body ReplyBody, size int) *[]byte {
	buf := getBuf()
	b := slices.Grow((*buf)[:0], size)
	*buf = body.AppendBody(appendSequence(b, seq))
	return buf
}

// sequenceField is the field number of PubSubResp.sequence.
var sequenceField = (&pb.PubSubResp{}).ProtoReflect().Descriptor().Fields().ByName("sequence").Number()

// appendSequence appends the encoded sequence field of a reply to b, as
// proto.Marshal writes it (nothing for 0).
func appendSequence(b []byte, seq int64) []byte {
	if seq == 0 {
		return b
	}
	b = protowire.AppendTag(b, sequenceField, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(seq))
}

// sequenceSize is the size of the encoded sequence field.
func sequenceSize(seq int64) int {
	if seq == 0 {
		return 0
	}
	return protowire.SizeTag(sequenceField) + protowire.SizeVarint(uint64(seq))
}

// pushFrame is one queued push: a reply encoded for this session, or one
// encoded once for many sessions to which this session adds its sequence.
type pushFrame struct {
	own    *[]byte // pooled
	shared *EncodedReply
	seq    int64
	size   int // the frame's payload
	// rest marks own as the end of a frame whose start writeNow wrote:
	// raw bytes, no header.
	rest bool
}

// putPush buffers one push frame. Callers hold wmu.
func (s *session) putPush(f pushFrame) error {
	if f.rest {
		_, err := s.bw.Write(*f.own)
		return err
	}
	if f.shared == nil {
		return s.putFrame(ws.OpBinary, *f.own)
	}
	var prefix [binary.MaxVarintLen64 + 2]byte // a tag and a varint
	p := appendSequence(prefix[:0], f.seq)
	if err := ws.WriteHeader(s.bw, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(p) + len(f.shared.body))}); err != nil {
		return err
	}
	if _, err := s.bw.Write(p); err != nil {
		return err
	}
	_, err := s.bw.Write(f.shared.body)
	return err
}

// holdFrame counts a queued push as the session's pending reply bytes, and
// under the memory budget (a shared reply once for all sessions).
func (s *session) holdFrame(f pushFrame) {
	if f.shared == nil {
		s.charge(int64(f.size))
		return
	}
	s.pending.held.Add(int64(f.size))
	if s.opts.Memory != nil && f.shared.queued.Add(1) == 1 {
		s.opts.Memory.charge(int64(len(f.shared.body)))
	}
}

// releaseFrame gives back what holdFrame counted, once the push is written
// or dropped.
func (s *session) releaseFrame(f pushFrame) {
	if f.shared == nil {
		s.charge(-int64(f.size))
		putBuf(f.own)
		return
	}
	s.pending.shrink(int64(f.size))
	if s.opts.Memory != nil && f.shared.queued.Add(-1) == 0 {
		s.opts.Memory.charge(-int64(len(f.shared.body)))
	}
}

// writesVectors reports whether conn writes net.Buffers with one system call
// (writev); other connections would take one call per buffer.
func writesVectors(conn net.Conn) bool {
	switch conn.(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	}
	return false
}

// payloadBytes is the size of the frames' payloads.
func payloadBytes(frames []pushFrame) int {
	n := 0
	for _, f := range frames {
		n += f.size
	}
	return n
}

// writeVectored writes frames with one vectored write of their headers and
// payloads, copying no payload. Callers hold wmu.
func (s *session) writeVectored(frames []pushFrame) error {
	if s.bw.Buffered() > 0 {
		if err := s.bw.Flush(); err != nil {
			return err
		}
	}
	// The headers (and sequences) of all frames, in one buffer grown
	// first, so that the slices taken of it stay valid.
	heads := getBuf()
	defer putBuf(heads)
	room := 0
	for _, f := range frames {
		room += ws.MaxHeaderSize + sequenceSize(f.seq)
	}
	*heads = grow((*heads)[:0], room)[:0]
	w := appendWriter{b: *heads}
	var scratch [ws.MaxHeaderSize]byte
	bufs := make(net.Buffers, 0, 2*len(frames))
	for _, f := range frames {
		if f.rest {
			bufs = append(bufs, *f.own)
			continue
		}
		start := len(w.b)
		body := f.shared.bodyOr(f.own)
		prefix := 0
		if f.shared != nil {
			prefix = sequenceSize(f.seq)
		}
		if err := ws.WriteHeaderBuffer(&w, ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(prefix + len(body))}, scratch[:]); err != nil {
			return err
		}
		if f.shared != nil {
			w.b = appendSequence(w.b, f.seq)
		}
		bufs = append(bufs, w.b[start:len(w.b):len(w.b)], body)
	}
	n, err := bufs.WriteTo(s.conn)
	s.countWritten(int(n))
	return err
}

// bodyOr returns the encoded reply's bytes, or own's when e is nil.
func (e *EncodedReply) bodyOr(own *[]byte) []byte {
	if e == nil {
		return *own
	}
	return e.body
}

// appendWriter appends what is written to b.
type appendWriter struct{ b []byte }

// Write implements io.Writer.
func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
