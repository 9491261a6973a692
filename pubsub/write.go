package pubsub

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
)

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

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
	extra := s.chargeBeyond(len(b), reserved)
	defer s.charge(-extra)
	return s.writeFrame(ws.OpBinary, b)
}

// writeBody is writeReply for a body the handler encodes itself: the reply
// of sequence seq is counted as the session's pending bytes before it is
// encoded, then encoded into a pooled buffer and written.
func (s *session) writeBody(seq int64, body ReplyBody, reserved int64) error {
	size := sequenceSize(seq) + body.BodySize()
	extra := s.chargeBeyond(size, reserved)
	defer s.charge(-extra)
	buf := encodeBody(seq, body, size)
	defer putBuf(buf)
	return s.writeFrame(ws.OpBinary, *buf)
}

// chargeBeyond counts the bytes of a reply of size bytes beyond the
// reserved bytes its handler holds as the session's pending reply bytes,
// without waiting (its data is in memory already), and returns how many it
// counted, to give back once the reply is written.
func (s *session) chargeBeyond(size int, reserved int64) (extra int64) {
	extra = max(int64(size)-reserved, 0)
	s.charge(extra)
	return extra
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
		s.bw.Reset(countedWriter{s})
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
	s.connFailed.Store(true)
	s.wakeReader()
	if errors.Is(err, os.ErrDeadlineExceeded) && s.abandonAt.Load() == 0 {
		s.opts.Logger.Warn("pubsub: closing session: client does not read its replies", "remote", s.conn.RemoteAddr())
	}
}
