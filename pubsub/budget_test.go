package pubsub

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"google.golang.org/protobuf/proto"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// reservingMux answers fetches with a reply of just under size bytes,
// reserved before it is built; granted counts the reservations that went
// through.
func reservingMux(size int, granted *atomic.Int32) *Mux {
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		if err := req.Reserve(ctx, size); err != nil {
			return nil, err
		}
		granted.Add(1)
		return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaFetchResp{KafkaFetchResp: &pb.KafkaFetchResp{
			Messages: []*pb.KafkaMessage{{Value: make([]byte, size-64)}},
		}}}, nil
	}))
	return m
}

// sendAsync writes requests in order from a goroutine (net.Pipe blocks a
// write until the session reads it) and reports how many were taken.
func (p *peer) sendAsync(reqs ...*pb.PubSubReq) *atomic.Int32 {
	var sent atomic.Int32
	go func() {
		for _, r := range reqs {
			b, _ := proto.Marshal(r)
			p.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if ws.WriteFrame(p.conn, ws.MaskFrame(ws.NewBinaryFrame(b))) != nil {
				return
			}
			sent.Add(1)
		}
	}()
	return &sent
}

// eventually waits up to 5s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stays checks that cond holds for a while: the session had every chance
// to break it.
func stays(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 20 {
		if !cond() {
			t.Fatalf("%s: broken", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSessionAtItsPendingBytesReadsNoMoreRequests(t *testing.T) {
	var granted atomic.Int32
	const size = 48 << 10
	// Two replies fill the session's bound.
	p := startSession(t, context.Background(), reservingMux(size, &granted), Options{MaxPendingBytes: 2 * size})
	p.sendAsync(fetchReq(1, "t"), fetchReq(2, "t"))
	eventually(t, "two reservations", func() bool { return granted.Load() == 2 })
	// The first reply blocks on the pipe; the second is built and waits
	// behind it. The session holds its bound: no third reservation, and at
	// most one more request read (the one the reader was reading).
	var more []*pb.PubSubReq
	for i := 3; i <= 8; i++ {
		more = append(more, fetchReq(int64(i), "t"))
	}
	sent := p.sendAsync(more...)
	stays(t, "no third reservation", func() bool { return granted.Load() == 2 })
	if n := sent.Load(); n > 1 {
		t.Fatalf("the session read %d requests while at its pending bytes", n)
	}
	// Reading the replies lets the rest through, in turn.
	seen := map[int64]bool{}
	for range 8 {
		seen[p.recv().GetSequence()] = true
	}
	if len(seen) != 8 {
		t.Fatalf("replies to %v, want 8 distinct requests", seen)
	}
	if granted.Load() != 8 {
		t.Fatalf("%d reservations after every reply was read, want 8", granted.Load())
	}
}

func TestMemoryBudgetIsSharedBySessions(t *testing.T) {
	var granted atomic.Int32
	const size = 48 << 10
	mem := NewMemoryBudget(size + size/2)
	opts := Options{Memory: mem}
	a := startSession(t, context.Background(), reservingMux(size, &granted), opts)
	b := startSession(t, context.Background(), reservingMux(size, &granted), opts)
	a.send(fetchReq(1, "t")) // its reply is not read: it holds its bytes
	eventually(t, "a's reservation", func() bool { return granted.Load() == 1 })
	b.send(fetchReq(1, "t"))
	eventually(t, "b to wait for the budget", mem.Full)
	stays(t, "b waiting", func() bool { return granted.Load() == 1 })
	if a.recv().GetKafkaFetchResp() == nil {
		t.Fatal("a got no fetch reply")
	}
	if b.recv().GetKafkaFetchResp() == nil {
		t.Fatal("b got no fetch reply")
	}
	eventually(t, "the budget to be given back", func() bool { return mem.Used() == 0 })
}

func TestMemoryBudgetServesTheSessionsHoldingLeastFirst(t *testing.T) {
	mem := NewMemoryBudget(100)
	var big, small atomic.Int64
	big.Store(80)
	small.Store(10)
	mem.charge(90)
	ctx := context.Background()
	got := make(chan string, 2)
	go func() {
		if mem.acquire(ctx, nil, 20, 0, &big) == nil {
			got <- "big"
		}
	}()
	eventually(t, "the first waiter", func() bool { return waiters(mem) == 1 })
	go func() {
		if mem.acquire(ctx, nil, 20, 0, &small) == nil {
			got <- "small"
		}
	}()
	eventually(t, "the second waiter", func() bool { return waiters(mem) == 2 })
	mem.charge(-15) // room for one of them
	if first := <-got; first != "small" {
		t.Fatalf("%s was served first, want the session holding least", first)
	}
	mem.charge(-20) // and now for the other
	if second := <-got; second != "big" {
		t.Fatalf("then %s", second)
	}
	if mem.Used() != 95 {
		t.Fatalf("used %d, want 95", mem.Used())
	}
}

func TestReservationLargerThanTheBudgetGoesThroughAlone(t *testing.T) {
	mem := NewMemoryBudget(100)
	var held atomic.Int64
	if err := mem.acquire(context.Background(), nil, 500, 0, &held); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := mem.acquire(ctx, nil, 1, 0, &held); err != context.DeadlineExceeded {
		t.Fatalf("second reservation: %v, want it to wait", err)
	}
	if waiters(mem) != 0 {
		t.Fatal("a reservation that gave up still waits")
	}
}

func TestARequestsOwnReservationDoesNotHoldUpItsGrowth(t *testing.T) {
	// The request reserved what it asked Kafka for; the answer (a record
	// larger than the bounds) needs more. Nothing else is held: it goes
	// through alone, within the session's bound and the process budget.
	const bound = 64 << 10
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"session bound", Options{MaxPendingBytes: bound}},
		{"process budget", Options{Memory: NewMemoryBudget(bound)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := make(chan error, 1)
			m := NewMux()
			m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
				ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				err := req.Reserve(ctx, bound/2)
				if err == nil {
					err = req.Reserve(ctx, 150<<10)
				}
				done <- err
				return nil, err
			}))
			startSession(t, context.Background(), m, tc.opts).send(fetchReq(1, "t"))
			if err := <-done; err != nil {
				t.Fatalf("the request's growth past the bound: %v, want it to go through alone", err)
			}
		})
	}
}

func TestAnotherRequestsReservationStillHoldsUpAnOverBoundOne(t *testing.T) {
	mem := NewMemoryBudget(100)
	var held atomic.Int64
	mem.charge(30) // 20 of them this request's, 10 another's
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := mem.acquire(ctx, nil, 500, 20, &held); err != context.DeadlineExceeded {
		t.Fatalf("over-bound reservation beside another request's: %v, want it to wait", err)
	}
}

func waiters(b *MemoryBudget) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiters)
}

func TestReserveSetsWhatTheRequestHolds(t *testing.T) {
	mem := NewMemoryBudget(1 << 20)
	held := make(chan int, 3)
	m := NewMux()
	m.On(CmdKafkaFetch, HandlerFunc(func(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
		for _, n := range []int{1000, 1000, 10} {
			if err := req.Reserve(ctx, n); err != nil {
				return nil, err
			}
			held <- mem.Used()
		}
		return nil, nil
	}))
	p := startSession(t, context.Background(), m, Options{Memory: mem})
	p.send(fetchReq(1, "t"))
	for _, want := range []int{1000, 1000, 10} {
		if got := <-held; got != want {
			t.Fatalf("the request holds %d bytes, want %d", got, want)
		}
	}
	eventually(t, "the bytes to be given back", func() bool { return mem.Used() == 0 })
}
