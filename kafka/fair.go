package kafka

import (
	"context"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/pubsub"
)

// Fair sharing of a cluster's broker work. Every session's fetches and
// offset look-ups go to the same few broker connections of the shared
// client, where responses come back in order: a session that queues many
// large fetches would make every other session's small ones wait behind
// them. So each session has a lane, a lane has at most
// maxLaneBrokerRequests requests at the brokers at once, the cluster at
// most maxBrokerRequests, and when requests wait, the lanes take turns
// (round robin), one request each.
const (
	// maxBrokerRequests bounds the requests a cluster's sessions have at
	// its brokers at once.
	maxBrokerRequests = 16
	// maxLaneBrokerRequests bounds the requests one session has at the
	// brokers at once: a fetch of another session waits behind at most
	// one response of each busy session on a broker connection.
	maxLaneBrokerRequests = 1
)

// brokerTurns hands out a cluster's turns at its brokers.
type brokerTurns struct {
	mu      sync.Mutex
	running int
	// ring holds the lanes with waiting requests, in turn order.
	ring []*brokerLane
	// shared is the lane of work that belongs to no session.
	shared *brokerLane
}

// brokerLane is one session's queue of broker requests.
type brokerLane struct {
	turns   *brokerTurns
	limit   int
	running int
	waiting []*turnWaiter
	inRing  bool
}

// turnWaiter is a request waiting for its turn.
type turnWaiter struct {
	ready   chan struct{} // closed when granted
	granted bool
}

// newLane returns a lane for one session.
func (t *brokerTurns) newLane() *brokerLane {
	return &brokerLane{turns: t, limit: maxLaneBrokerRequests}
}

// laneKey marks a context with the lane its broker requests wait in.
type laneKey struct{}

// withLane returns ctx whose broker requests wait in l.
func withLane(ctx context.Context, l *brokerLane) context.Context {
	return context.WithValue(ctx, laneKey{}, l)
}

// replyKey marks a context with the request whose reply its broker fetches
// build.
type replyKey struct{}

// withReply returns ctx whose broker fetches reserve the bytes they ask for
// in req's reply budget before they are sent (pubsub.Request.Reserve).
func withReply(ctx context.Context, req *pubsub.Request) context.Context {
	return context.WithValue(ctx, replyKey{}, req)
}

// laneOf returns the lane of ctx: the session's, or the cluster's shared
// lane for work of no session, which only the cluster bound limits.
func (t *brokerTurns) laneOf(ctx context.Context) *brokerLane {
	if l, ok := ctx.Value(laneKey{}).(*brokerLane); ok && l.turns == t {
		return l
	}
	return t.sharedLane()
}

// withSharedLane returns ctx whose broker requests wait in the cluster's
// shared lane, whatever session's lane ctx had: work done for every session
// must not queue behind one session's requests.
func (t *brokerTurns) withSharedLane(ctx context.Context) context.Context {
	return withLane(ctx, t.sharedLane())
}

// sharedLane returns the lane of work that belongs to no session, which only
// the cluster bound limits.
func (t *brokerTurns) sharedLane() *brokerLane {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.shared == nil {
		t.shared = &brokerLane{turns: t, limit: maxBrokerRequests}
	}
	return t.shared
}

// wait returns when ctx's lane has its turn, or with ctx's error; release
// ends the turn.
func (t *brokerTurns) wait(ctx context.Context) (release func(), err error) {
	l := t.laneOf(ctx)
	t.mu.Lock()
	if len(t.ring) == 0 && t.running < maxBrokerRequests && l.running < l.limit {
		t.start(l)
		t.mu.Unlock()
		return l.done, nil
	}
	w := &turnWaiter{ready: make(chan struct{})}
	l.waiting = append(l.waiting, w)
	if !l.inRing {
		l.inRing = true
		t.ring = append(t.ring, l)
	}
	t.grantLocked()
	t.mu.Unlock()
	select {
	case <-w.ready:
		return l.done, nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if w.granted {
		t.finish(l)
	} else {
		for i, o := range l.waiting {
			if o == w {
				l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
				break
			}
		}
	}
	return nil, ctx.Err()
}

// done ends one of the lane's turns.
func (l *brokerLane) done() {
	t := l.turns
	t.mu.Lock()
	defer t.mu.Unlock()
	t.finish(l)
}

// start counts a turn of l. Callers hold mu.
func (t *brokerTurns) start(l *brokerLane) {
	l.running++
	t.running++
}

// finish ends a turn of l and gives the turns it frees. Callers hold mu.
func (t *brokerTurns) finish(l *brokerLane) {
	l.running--
	t.running--
	t.grantLocked()
}

// grantLocked gives free turns to the lanes in the ring, one request per
// lane in turn; a lane at its own bound keeps its place for the next round.
// Callers hold mu.
func (t *brokerTurns) grantLocked() {
	for t.running < maxBrokerRequests && len(t.ring) > 0 {
		granted := false
		for range len(t.ring) {
			l := t.ring[0]
			t.ring = t.ring[1:]
			if len(l.waiting) == 0 {
				l.inRing = false
				continue
			}
			if l.running >= l.limit {
				t.ring = append(t.ring, l)
				continue
			}
			w := l.waiting[0]
			l.waiting = l.waiting[1:]
			w.granted = true
			close(w.ready)
			t.start(l)
			if len(l.waiting) > 0 {
				t.ring = append(t.ring, l)
			} else {
				l.inRing = false
			}
			granted = true
			break
		}
		if !granted {
			return
		}
	}
}

// brokerRequest issues req to broker (any broker when it is negative) in
// ctx's lane: it waits for the lane's turn, so that a session's queued
// requests do not delay another session's. A fetch for a reply
// (withReply) first reserves the bytes it asks for, so that a session whose
// client does not read its replies asks Kafka for no more, and keeps what
// the broker returned.
func (k *Cluster) brokerRequest(ctx context.Context, broker int32, req kmsg.Request) (kmsg.Response, error) {
	fetch, _ := req.(*kmsg.FetchRequest)
	reply, _ := ctx.Value(replyKey{}).(*pubsub.Request)
	if fetch != nil && reply != nil {
		if err := reply.Reserve(ctx, askedBytes(fetch)); err != nil {
			return nil, err
		}
	}
	resp, err := k.requestInTurn(ctx, broker, req)
	if fetch != nil && reply != nil {
		reply.Reserve(ctx, fetchedBytes(resp)) // less: never waits
	}
	return resp, err
}

// requestInTurn issues req once ctx's lane has its turn.
func (k *Cluster) requestInTurn(ctx context.Context, broker int32, req kmsg.Request) (kmsg.Response, error) {
	release, err := k.turns.wait(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	if broker < 0 {
		return k.cl.Request(ctx, req)
	}
	return k.cl.Broker(int(broker)).Request(ctx, req)
}

// askedBytes is the most a fetch asks for: its bound, or its partitions'
// bounds together when they are less.
func askedBytes(req *kmsg.FetchRequest) int {
	n := 0
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			n += int(p.PartitionMaxBytes)
		}
	}
	return min(n, int(req.MaxBytes))
}

// fetchedBytes is the size of the record batches of a fetch response (0
// for none or another response).
func fetchedBytes(resp kmsg.Response) int {
	f, ok := resp.(*kmsg.FetchResponse)
	if !ok {
		return 0
	}
	n := 0
	for _, t := range f.Topics {
		for _, p := range t.Partitions {
			n += len(p.RecordBatches)
		}
	}
	return n
}
