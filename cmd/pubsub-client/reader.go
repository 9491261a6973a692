package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/envoy-pubsub/gateway/client"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// tickInterval is how often a group member commits what it printed, and
// how often -e looks for partitions whose pushes stopped short of the end.
const tickInterval = time.Second

// requestTimeout bounds each request the reader makes beside its
// subscription (end offsets, commits, probes).
const requestTimeout = 30 * time.Second

// reader reads a topic through one subscription and prints its records
// (-C). It runs in one goroutine; requests that wait for a reply run in
// goroutines of their own, so the subscription is always drained, and hand
// their results back to that goroutine as events.
type reader struct {
	c      *client.Client
	o      *options
	format formatter
	out    io.Writer
	buf    bytes.Buffer

	// parts are the partitions being read: all subscribed ones, or those
	// the group assigned.
	parts map[int32]*partitionState
	// started is set once the partitions are known: at the subscription's
	// acknowledgement, or at the group's first assignment.
	started bool
	printed int

	events chan func()
	// life is the context of background requests; stop ends them.
	life context.Context
	stop context.CancelFunc
	err  error // the first failure of a background request

	// A group member commits in order, one request at a time.
	commitQueue [][]*pb.KafkaPartitionOffset
	committing  bool
}

// partitionState is what the reader knows of one partition.
type partitionState struct {
	// next is the offset after the last record seen, -1 until known.
	next int64
	// end is the end of the log when reading the partition began, -1 until
	// known (-e only).
	end int64
	// printedNext is the offset after the last record printed, -1 before
	// the first; committed is the last one committed.
	printedNext, committed int64
	// lastTick is next at the previous tick; probing is set while a fetch
	// looks past records the partition's pushes skip.
	lastTick int64
	probing  bool
	// held are pushes that came before end was known (-e), printed once it
	// is, so that none beyond it is.
	held []*pb.KafkaFetchResp
}

func newPartitionState(next int64) *partitionState {
	return &partitionState{next: next, end: -1, printedNext: -1, committed: -1, lastTick: -1}
}

// newReader returns the reader options ask for, printing to out.
func newReader(c *client.Client, o *options, out io.Writer) (*reader, error) {
	format, err := newFormatter(o)
	if err != nil {
		return nil, err
	}
	return &reader{c: c, o: o, format: format, out: out, parts: map[int32]*partitionState{}, events: make(chan func())}, nil
}

// subscribeCmd is the subscription options ask for; offsets are the start
// offsets of -o -N.
func subscribeCmd(o *options, offsets map[int32]int64) *pb.CmdKafkaSubscribe {
	cmd := &pb.CmdKafkaSubscribe{Topic: o.topic, Group: o.group, Filter: o.filter, Offsets: offsets}
	if o.partitionSet {
		cmd.Partitions = []int32{o.partition}
	}
	switch o.start.kind {
	case startEarliest, startRelative: // relative: offsets name every partition
		cmd.Start = &pb.CmdKafkaSubscribe_Earliest{Earliest: true}
	case startLatest:
		cmd.Start = &pb.CmdKafkaSubscribe_Latest{Latest: true}
	case startOffset:
		cmd.Start = &pb.CmdKafkaSubscribe_Offset{Offset: o.start.value}
	case startTimestamp:
		cmd.Start = &pb.CmdKafkaSubscribe_Timestamp{Timestamp: o.start.value}
	}
	return cmd
}

// probeCmd is the fetch that -e sends to learn where a partition whose
// pushes stopped goes on: with the subscription's filter, it skips what the
// subscription skips.
func probeCmd(o *options, partition int32, offset int64) *pb.CmdKafkaFetch {
	return &pb.CmdKafkaFetch{Topic: o.topic, Partition: partition, Offset: offset, Filter: o.filter}
}

// run subscribes and prints records until -c or -e says it is done, ctx
// ends (nil), or something fails. A group member then commits what it
// printed.
func (r *reader) run(ctx context.Context) error {
	var offsets map[int32]int64
	if r.o.start.kind == startRelative {
		var err error
		if offsets, err = r.relativeOffsets(ctx); err != nil {
			return err
		}
	}
	sub, err := r.c.Subscribe(ctx, subscribeCmd(r.o, offsets))
	if err != nil {
		return err
	}
	r.life, r.stop = context.WithCancel(context.Background())
	defer r.stop()
	if r.o.group == "" {
		r.started = true
		for _, s := range sub.Starts {
			r.add(s.GetPartition(), s.GetOffset())
		}
	}
	var tick <-chan time.Time
	if r.o.group != "" || r.o.toEnd {
		t := time.NewTicker(tickInterval)
		defer t.Stop()
		tick = t.C
	}
	for r.err == nil && !r.finished() {
		select {
		case resp, ok := <-sub.C():
			if !ok {
				return fmt.Errorf("connection ended: %w", r.c.Err())
			}
			r.err = r.handle(resp)
		case apply := <-r.events:
			apply()
		case <-tick:
			r.tick()
		case <-ctx.Done():
			return r.finish(sub)
		}
	}
	return errors.Join(r.err, r.finish(sub))
}

// finished reports whether -c or -e says the reader is done.
func (r *reader) finished() bool {
	if r.o.count > 0 && r.printed >= r.o.count {
		return true
	}
	if !r.o.toEnd || !r.started {
		return false
	}
	if r.o.group != "" && len(r.parts) == 0 {
		return false // all revoked: the group assigns partitions again (kcat waits too)
	}
	for _, st := range r.parts {
		if st.end < 0 || st.next < st.end {
			return false
		}
	}
	return true
}

// handle takes one push of the subscription.
func (r *reader) handle(resp *pb.PubSubResp) error {
	switch {
	case resp.GetErrorResp() != nil:
		e := resp.GetErrorResp()
		return &client.ServerError{Code: e.GetCode(), Message: e.GetMessage()}
	case resp.GetKafkaAssignment() != nil:
		r.assign(resp.GetKafkaAssignment())
	case resp.GetKafkaFetchResp() != nil:
		return r.print(resp.GetKafkaFetchResp())
	}
	return nil
}

// print writes the records of one push, as far as -c and -e allow.
func (r *reader) print(f *pb.KafkaFetchResp) error {
	st := r.parts[f.GetPartition()]
	if st == nil {
		return nil // revoked
	}
	if r.o.toEnd && st.end < 0 {
		st.held = append(st.held, f)
		return nil
	}
	r.buf.Reset()
	n, printedNext := 0, st.printedNext
	for _, m := range f.GetMessages() {
		if r.o.count > 0 && r.printed+n >= r.o.count {
			break
		}
		if st.end >= 0 && m.GetOffset() >= st.end {
			break // -e: past the end of the log as it was
		}
		r.format(&r.buf, r.o.topic, f.GetPartition(), m)
		n, printedNext = n+1, m.GetOffset()+1
	}
	if msgs := f.GetMessages(); len(msgs) > 0 {
		st.next = max(st.next, msgs[len(msgs)-1].GetOffset()+1)
	}
	st.next = max(st.next, f.GetNextOffset())
	if n == 0 {
		return nil
	}
	if _, err := r.out.Write(r.buf.Bytes()); err != nil {
		return err
	}
	r.printed += n
	st.printedNext = printedNext
	return nil
}

// add starts reading partition p at offset next (-1: not known yet) and,
// for -e, learns where its log ends now.
func (r *reader) add(p int32, next int64) {
	st := newPartitionState(next)
	r.parts[p] = st
	if !r.o.toEnd {
		return
	}
	r.background(func(ctx context.Context) func() {
		end, err := r.c.ListOffset(ctx, r.o.topic, p, -1)
		if err != nil {
			return func() { r.fail(err) }
		}
		start := int64(-1)
		if next < 0 {
			start, err = r.groupStart(ctx, p, end)
		}
		return func() {
			if err != nil {
				r.fail(err)
				return
			}
			if r.parts[p] != st {
				return // revoked meanwhile (and maybe assigned again: that has its own)
			}
			st.end, st.next = end, max(st.next, start)
			held := st.held
			st.held = nil
			for _, f := range held {
				if err := r.print(f); err != nil {
					r.fail(err)
					return
				}
			}
		}
	})
}

// groupStart returns where the group's reading of p starts: its committed
// offset, else the subscription's start (as the server picks it).
func (r *reader) groupStart(ctx context.Context, p int32, end int64) (int64, error) {
	committed, err := r.c.Committed(ctx, r.o.group, r.o.topic, p)
	if err != nil {
		return 0, err
	}
	if len(committed) == 1 && committed[0].GetOffset() >= 0 {
		return committed[0].GetOffset(), nil
	}
	switch r.o.start.kind {
	case startEarliest:
		return r.c.ListOffset(ctx, r.o.topic, p, -2)
	case startOffset:
		return r.o.start.value, nil
	case startTimestamp:
		off, err := r.c.ListOffset(ctx, r.o.topic, p, r.o.start.value)
		if err != nil || off >= 0 {
			return off, err
		}
	}
	return end, nil
}

// assign follows the group's assignment: revoked partitions commit what was
// printed of them and are dropped; assigned ones are read.
func (r *reader) assign(a *pb.KafkaAssignment) {
	var revoked []*pb.KafkaPartitionOffset
	for _, p := range a.GetRevoked() {
		if st := r.parts[p]; st != nil {
			if st.printedNext > st.committed {
				revoked = append(revoked, &pb.KafkaPartitionOffset{Partition: p, Offset: st.printedNext})
			}
			delete(r.parts, p)
		}
	}
	if len(revoked) > 0 {
		r.queueCommit(revoked)
	}
	for _, p := range a.GetAssigned() {
		r.started = true
		r.add(p, -1)
	}
}

// tick commits what a group member printed since the last commit and, for
// -e, probes partitions whose pushes stopped short of the end.
func (r *reader) tick() {
	if r.o.group != "" && !r.committing && len(r.commitQueue) == 0 {
		if offsets := r.uncommitted(); len(offsets) > 0 {
			r.queueCommit(offsets)
		}
	}
	if !r.o.toEnd {
		return
	}
	for p, st := range r.parts {
		if st.probing || st.end < 0 || st.next < 0 || st.next >= st.end {
			continue
		}
		if st.next != st.lastTick {
			st.lastTick = st.next // pushes are moving it on
			continue
		}
		r.probe(p, st)
	}
}

// probe fetches partition p at the reader's position. The pushes of a
// partition skip what holds no record for this reader (transaction
// markers, records the filters hide) without telling; an empty reply's
// next_offset says how far that goes. A failed probe is let be: the
// subscription reports a partition that cannot go on.
func (r *reader) probe(p int32, st *partitionState) {
	st.probing = true
	from := st.next
	r.background(func(ctx context.Context) func() {
		resp, err := r.c.FetchReply(ctx, probeCmd(r.o, p, from))
		return func() {
			st.probing = false
			if err != nil || len(resp.GetMessages()) > 0 || resp.GetNextOffset() <= st.next {
				return
			}
			st.next = resp.GetNextOffset()
			if st.next < st.end && r.parts[p] == st {
				r.probe(p, st) // a long run of skipped offsets: go on at once
			}
		}
	})
}

// uncommitted returns the printed offsets not committed yet.
func (r *reader) uncommitted() []*pb.KafkaPartitionOffset {
	var offsets []*pb.KafkaPartitionOffset
	for p, st := range r.parts {
		if st.printedNext > st.committed {
			offsets = append(offsets, &pb.KafkaPartitionOffset{Partition: p, Offset: st.printedNext})
		}
	}
	return offsets
}

// queueCommit commits offsets after the commits queued before.
func (r *reader) queueCommit(offsets []*pb.KafkaPartitionOffset) {
	r.commitQueue = append(r.commitQueue, offsets)
	r.nextCommit()
}

// nextCommit sends the first queued commit unless one is in flight.
func (r *reader) nextCommit() {
	if r.committing || len(r.commitQueue) == 0 {
		return
	}
	offsets := r.commitQueue[0]
	r.commitQueue = r.commitQueue[1:]
	r.committing = true
	r.background(func(ctx context.Context) func() {
		err := r.c.Commit(ctx, r.o.group, r.o.topic, offsets...)
		return func() {
			r.committing = false
			if err != nil {
				r.fail(fmt.Errorf("commit: %w", err))
				return
			}
			for _, o := range offsets {
				if st := r.parts[o.GetPartition()]; st != nil {
					st.committed = max(st.committed, o.GetOffset())
				}
			}
			r.nextCommit()
		}
	})
}

// finish ends the reading: a group member waits for the commit in flight
// and commits what it printed since, also after a failure (while the
// connection lives). The subscription is drained meanwhile, so the
// connection's reader never waits for this goroutine.
func (r *reader) finish(sub *client.Subscription) error {
	if r.o.group == "" {
		return nil
	}
	go func() {
		for range sub.C() {
		}
	}()
	for r.committing {
		(<-r.events)()
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	for _, offsets := range append(r.commitQueue, r.uncommitted()) {
		if len(offsets) == 0 {
			continue
		}
		if err := r.c.Commit(ctx, r.o.group, r.o.topic, offsets...); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
	}
	return nil
}

// fail records the first failure of a background request.
func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// background runs work in a goroutine with a request deadline and hands
// the function it returns to the reader's goroutine, unless the reader has
// stopped.
func (r *reader) background(work func(ctx context.Context) func()) {
	go func() {
		ctx, cancel := context.WithTimeout(r.life, requestTimeout)
		defer cancel()
		apply := work(ctx)
		select {
		case r.events <- apply:
		case <-r.life.Done():
		}
	}()
}

// relativeOffsets returns, for -o -N, the offset N records before the end
// of every partition read (not before the start of its log).
func (r *reader) relativeOffsets(ctx context.Context) (map[int32]int64, error) {
	var ends []*pb.KafkaPartitionOffset
	if r.o.partitionSet {
		end, err := r.c.ListOffset(ctx, r.o.topic, r.o.partition, -1)
		if err != nil {
			return nil, err
		}
		ends = []*pb.KafkaPartitionOffset{{Partition: r.o.partition, Offset: end}}
	} else {
		var err error
		if ends, err = r.c.LatestOffsets(ctx, r.o.topic); err != nil {
			return nil, err
		}
	}
	offsets := make(map[int32]int64, len(ends))
	for _, e := range ends {
		begin, err := r.c.ListOffset(ctx, r.o.topic, e.GetPartition(), -2)
		if err != nil {
			return nil, err
		}
		offsets[e.GetPartition()] = max(begin, e.GetOffset()-r.o.start.value)
	}
	return offsets, nil
}
