package pubsub

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// CloseSlowConsumer is the close code of a session whose client did not read
// its pushed replies for PushStallTimeout (an application code, RFC 6455
// section 7.4.2).
const CloseSlowConsumer ws.StatusCode = 4008

// ErrSlowConsumer is returned by Request.Push once the session was closed
// because its client did not take pushed replies.
var ErrSlowConsumer = errors.New("pubsub: slow consumer")

// pushQueue holds encoded replies of streaming commands until a writer
// goroutine, which runs only while the queue is not empty, writes them.
// Pushers block while the queue holds PushQueueBytes (their delivery pauses);
// a pusher blocked for PushStallTimeout closes the session with
// CloseSlowConsumer. Replies to plain requests do not wait behind pushes.
type pushQueue struct {
	frames  []pushFrame
	bytes   int
	running bool          // a drainPushes goroutine is running
	stopped bool          // the session ended: no more pushes
	space   chan struct{} // closed when bytes shrink; made by a waiter
	exited  chan struct{} // closed when the writer exits; made by stopPushes
}

// enqueuePush waits while the queue is full, then encodes resp and queues it
// for writing: a paused push holds no encoded bytes.
func (s *session) enqueuePush(ctx context.Context, resp *pb.PubSubResp) error {
	return s.enqueue(ctx, proto.Size(resp), true, func() (pushFrame, error) {
		// The size was just computed on resp, which nothing changed since.
		buf := getBuf()
		b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend((*buf)[:0], resp)
		if err != nil {
			putBuf(buf)
			return pushFrame{}, fmt.Errorf("pubsub: encode push: %w", err)
		}
		*buf = b
		return pushFrame{own: buf}, nil
	})
}

// errNoRoom is enqueue's answer, when told not to wait, for a push that
// does not fit the queue now.
var errNoRoom = errors.New("pubsub: push queue full")

// enqueue waits while the queue has no room for a push of size bytes (or,
// unless wait, fails with errNoRoom at once), then builds it and queues it
// for writing. Queued pushes count as the session's pending reply bytes
// until written.
func (s *session) enqueue(ctx context.Context, size int, wait bool, build func() (pushFrame, error)) error {
	var stall <-chan time.Time
	s.qmu.Lock()
	for s.queue.bytes > 0 && s.queue.bytes+size > s.opts.PushQueueBytes {
		if s.queue.stopped || s.closing.Load() {
			s.qmu.Unlock()
			return s.pushClosedErr()
		}
		if !wait {
			s.qmu.Unlock()
			return errNoRoom
		}
		if s.queue.space == nil {
			s.queue.space = make(chan struct{})
		}
		space := s.queue.space
		s.qmu.Unlock()
		if stall == nil {
			t := time.NewTimer(s.opts.PushStallTimeout)
			defer t.Stop()
			stall = t.C
		}
		select {
		case <-space:
		case <-s.ctx.Done():
			return s.pushClosedErr()
		case <-ctx.Done():
			return ctx.Err()
		case <-stall:
			s.closeSlowConsumer()
			return ErrSlowConsumer
		}
		s.qmu.Lock()
	}
	if s.queue.stopped || s.closing.Load() || s.ctx.Err() != nil {
		s.qmu.Unlock()
		return s.pushClosedErr()
	}
	f, err := build()
	if err != nil {
		s.qmu.Unlock()
		return err
	}
	f.size = size
	if !s.queue.running {
		if rest, ok := s.writeNow(f); ok {
			if f.shared == nil {
				putBuf(f.own)
			}
			if rest == nil {
				s.qmu.Unlock()
				s.opts.Metrics.Pushed(1)
				return nil
			}
			// The push writer counts the push once it writes the rest.
			f = pushFrame{own: rest, size: len(*rest), rest: true}
		}
	}
	s.queue.frames = append(s.queue.frames, f)
	s.queue.bytes += f.size
	s.holdFrame(f)
	start := !s.queue.running
	s.queue.running = true
	s.qmu.Unlock()
	if start {
		go s.drainPushes()
	}
	return nil
}

// closeSlowConsumer ends a session whose client stopped taking pushes: its
// handlers and push writer stop at once, a write blocked on the client is
// abandoned after closeGrace, and the close frame follows the frame being
// written if the client takes it by then.
func (s *session) closeSlowConsumer() {
	if s.slowConsumer.Swap(true) {
		return
	}
	s.opts.Logger.Warn("pubsub: closing slow consumer", "remote", s.conn.RemoteAddr(), "stall", s.opts.PushStallTimeout)
	s.cancel()
	go s.closeAbandoning(CloseSlowConsumer, fmt.Sprintf("slow consumer: pushed replies not read for %v", s.opts.PushStallTimeout))
}

// stopPushes refuses further pushes and waits for the push writer to exit.
// The connection must be closed already, so that a blocked write fails.
func (s *session) stopPushes() {
	s.qmu.Lock()
	s.queue.stopped = true
	var exited chan struct{}
	if s.queue.running {
		s.queue.exited = make(chan struct{})
		exited = s.queue.exited
	}
	s.qmu.Unlock()
	if exited != nil {
		<-exited
	}
}

func (s *session) pushClosedErr() error {
	if s.slowConsumer.Load() {
		return ErrSlowConsumer
	}
	return ErrSessionClosed
}

// drainPushes writes queued pushes, all that are queued at once with one
// flush, until the queue is empty or the session closes.
func (s *session) drainPushes() {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Logger.Error("pubsub: push writer panic", "panic", p, "stack", string(debug.Stack()))
			s.closeWith(CloseInternalError, errMsgInternalFailure)
		}
	}()
	for {
		s.qmu.Lock()
		frames, n := s.queue.frames, s.queue.bytes
		s.queue.frames = nil
		if len(frames) == 0 || s.ctx.Err() != nil {
			s.exitDrain(frames)
			return
		}
		s.qmu.Unlock()
		err := s.writeFrames(frames)
		if err == nil {
			s.opts.Metrics.Pushed(len(frames))
		}
		for _, f := range frames {
			s.releaseFrame(f)
		}
		s.qmu.Lock()
		s.queue.bytes -= n
		if s.queue.space != nil {
			close(s.queue.space)
			s.queue.space = nil
		}
		s.qmu.Unlock()
		if err != nil {
			s.qmu.Lock()
			frames = s.queue.frames
			s.queue.frames = nil
			s.exitDrain(frames)
			return
		}
	}
}

// exitDrain ends the push writer, dropping frames. Callers hold qmu, which
// exitDrain releases. The frames' bytes are given back first (under qmu,
// as holdFrame counted them), so that once stopPushes returns the session
// holds none of them.
func (s *session) exitDrain(frames []pushFrame) {
	for _, f := range frames {
		s.releaseFrame(f)
	}
	s.queue.running = false
	s.lastPushWrite.Store(monoNow())
	s.queue.bytes = 0
	if s.queue.exited != nil {
		close(s.queue.exited)
		s.queue.exited = nil
	}
	if s.queue.space != nil {
		close(s.queue.space)
		s.queue.space = nil
	}
	s.qmu.Unlock()
}
