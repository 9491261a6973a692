package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/envoy-pubsub/gateway/metrics"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// readerBackoff is the pause before a failed subscription step is retried.
const readerBackoff = 250 * time.Millisecond

// MaxSubscribedPartitions bounds the partitions one session may subscribe
// to at once, over all its subscriptions.
const MaxSubscribedPartitions = 256

const opSubscribe = "subscribe"

// Causes of subscription failures.
var (
	ErrTooManySubscriptions  = fmt.Errorf("more than %d subscribed partitions in one session", MaxSubscribedPartitions)
	ErrDuplicateSubscription = errors.New("a subscription with this sequence exists")
	ErrUnknownSubscription   = errors.New("not found subscription")
)

// subscriptions are the live subscriptions of one session.
type subscriptions struct {
	mu sync.Mutex
	// live are in the order they were made: a session has a few (at most
	// MaxSubscribedPartitions), and a slice of them costs it less than a
	// map.
	live       []liveSubscription
	partitions int
}

// liveSubscription is a subscription by the sequence of its request.
type liveSubscription struct {
	seq int64
	sub *subscription
}

// subscription delivers one cmd_kafka_subscribe: a goroutine per partition.
type subscription struct {
	partitions int
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// subscribe answers cmd_kafka_subscribe with the start offsets, then pushes
// the records of every partition as they arrive.
func (h *handlers) subscribe(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
	cmd := req.Msg.GetCmdKafkaSubscribe()
	if cmd.GetGroup() != "" {
		return h.subscribeGroup(ctx, req)
	}
	topic, partitions := cmd.GetTopic(), slices.Clone(cmd.GetPartitions())
	fail := func(partition int32, cause error) (*pb.PubSubResp, error) {
		return nil, &CommandError{Op: opSubscribe, Topic: topic, Partition: partition, Cause: cause}
	}
	first := int32(-1)
	if len(partitions) > 0 {
		first = partitions[0]
	}
	if err := h.policy.checkRead(topic); err != nil {
		return fail(first, err)
	}
	lctx, cancel := context.WithTimeout(ctx, h.k.cfg.RequestTimeout.Duration())
	defer cancel()
	if len(partitions) == 0 {
		all, err := h.k.topicPartitions(lctx, topic)
		if err != nil {
			return fail(first, err)
		}
		partitions = all
	}
	slices.Sort(partitions)
	partitions = slices.Compact(partitions)
	starts := make([]*pb.KafkaPartitionOffset, len(partitions))
	for i, p := range partitions {
		off, err := h.k.startOffset(lctx, topic, p, cmd)
		if err != nil {
			return fail(p, err)
		}
		starts[i] = &pb.KafkaPartitionOffset{Partition: p, Offset: off}
	}

	// The subscription is complete before an unsubscribe can find it:
	// it cancels it and waits for its deliveries.
	sctx, scancel := context.WithCancel(withLane(req.Context(), h.lane))
	sub := &subscription{partitions: len(partitions), cancel: scancel}
	sub.wg.Add(len(starts))
	if err := h.subs.add(req.Sequence(), sub); err != nil {
		scancel()
		return fail(first, err)
	}
	ack := &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaSubscribeResp{KafkaSubscribeResp: &pb.KafkaSubscribeResp{Partitions: starts}}}
	if err := req.Push(sctx, ack); err != nil {
		h.subs.remove(req.Sequence())
		scancel()
		sub.wg.Add(-len(starts)) // no delivery starts
		return nil, nil
	}
	maxRecords := int(cmd.GetMaxRecords())
	if maxRecords <= 0 {
		maxRecords = DefaultMaxRecords
	}
	view := keyed(View{Scope: h.policy.ReadScope(topic), Filter: MatchFilter(cmd.GetFilter())})
	tally := metrics.TallyFrom(ctx)
	for _, s := range starts {
		tally.Touch(topic, s.Partition)
		d := &delivery{k: h.k, req: req, tally: tally, topic: topic, partition: s.Partition, cursor: s.Offset, maxRecords: maxRecords,
			view: view, told: s.Offset, toldAt: time.Now()}
		go d.run(sctx, &sub.wg, req.Hold())
	}
	return nil, nil
}

// unsubscribe ends a subscription; its reply follows the subscription's last
// push.
func (h *handlers) unsubscribe(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
	seq := req.Msg.GetCmdKafkaUnsubscribe().GetSubscription()
	sub := h.subs.remove(seq)
	if sub == nil {
		return nil, fmt.Errorf("failed to unsubscribe, subscription: %d, err: %w", seq, ErrUnknownSubscription)
	}
	sub.cancel()
	sub.wg.Wait()
	err := req.Push(ctx, &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaUnsubscribeResp{
		KafkaUnsubscribeResp: &pb.KafkaUnsubscribeResp{Subscription: seq},
	}})
	return nil, err
}

func (s *subscriptions) add(seq int64, sub *subscription) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.find(seq) >= 0 {
		return ErrDuplicateSubscription
	}
	if s.partitions+sub.partitions > MaxSubscribedPartitions {
		return ErrTooManySubscriptions
	}
	s.live = append(s.live, liveSubscription{seq, sub})
	s.partitions += sub.partitions
	return nil
}

func (s *subscriptions) remove(seq int64) *subscription {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(seq)
	if i < 0 {
		return nil
	}
	sub := s.live[i].sub
	s.live = slices.Delete(s.live, i, i+1)
	s.partitions -= sub.partitions
	return sub
}

// find returns the index of the subscription of seq in live, -1 if none.
// Callers hold mu.
func (s *subscriptions) find(seq int64) int {
	return slices.IndexFunc(s.live, func(l liveSubscription) bool { return l.seq == seq })
}

// startOffset resolves where a subscription starts in partition p: an
// explicit offset (which must lie in the log), the earliest or latest
// offset, or the first offset at or after a timestamp (latest if none).
func (k *Cluster) startOffset(ctx context.Context, topic string, p int32, cmd *pb.CmdKafkaSubscribe) (int64, error) {
	explicit, isExplicit := cmd.GetOffsets()[p]
	if !isExplicit {
		switch start := cmd.GetStart().(type) {
		case *pb.CmdKafkaSubscribe_Offset:
			explicit, isExplicit = start.Offset, true
		case *pb.CmdKafkaSubscribe_Earliest:
			return k.ListOffset(ctx, topic, p, -2)
		case *pb.CmdKafkaSubscribe_Timestamp:
			off, err := k.ListOffset(ctx, topic, p, start.Timestamp)
			if err != nil || off >= 0 {
				return off, err
			}
		}
	}
	end, err := k.ListOffset(ctx, topic, p, -1)
	if err != nil || !isExplicit {
		return end, err
	}
	begin, err := k.ListOffset(ctx, topic, p, -2)
	if err != nil {
		return 0, err
	}
	if explicit < begin || explicit > end {
		return 0, &causeError{kerr.OffsetOutOfRange.Message, kerr.OffsetOutOfRange}
	}
	return explicit, nil
}

// delivery pushes the records of one subscribed partition to one session.
type delivery struct {
	k          *Cluster
	req        *pubsub.Request
	tally      *metrics.Tally // the session's, for its log line
	topic      string
	partition  int32
	cursor     int64 // the next offset to deliver
	maxRecords int
	key        cacheKey  // the partition and incarnation read, once the reader runs
	view       keyedView // the records the session sees
	// told is the offset the client was last told to go on from (the start
	// or a push's next_offset), toldAt when; kept where view does not see
	// every record, so that the cursor may pass records without a push.
	told   int64
	toldAt time.Time

	// Set by run for the deliveries it runs.
	ctx     context.Context
	r       *partitionReader
	done    func() // ends the delivery: gives back what run took
	stopCtx func() bool
	// parked is set while the delivery waits, with no goroutine, for its
	// reader's change channel parkedOn (or its context) to wake it.
	parked   atomic.Bool
	parkedOn <-chan struct{}
	wake     func()
}

// run delivers from the record cache, which the shared reader fills at the
// end of the log, and from Kafka where the cache does not hold the cursor,
// until ctx ends or the session stops taking pushes. While the cursor is at
// the end of the log the delivery parks: it holds no goroutine until the
// reader has more.
func (d *delivery) run(ctx context.Context, wg *sync.WaitGroup, release func()) {
	ended := true
	defer func() {
		if ended {
			release() // the session may idle out once no delivery is live
			wg.Done()
		}
	}()
	defer d.recoverPanic(ctx)
	r, err := d.k.acquireReader(ctx, d.topic, d.partition, true)
	for err != nil {
		if terminal(err) {
			d.fail(ctx, err)
			return
		}
		d.log().Warn("kafka: subscription cannot start its reader", "err", err)
		if !sleep(ctx, readerBackoff) {
			return
		}
		r, err = d.k.acquireReader(ctx, d.topic, d.partition, true)
	}
	d.key = r.cacheKey() // the incarnation of the topic the subscription reads
	ended = false
	d.ctx, d.r = ctx, r
	d.done = func() {
		d.stopCtx()
		d.k.releaseReader(r)
		release()
		wg.Done()
	}
	d.wake = d.resumeHere
	d.stopCtx = context.AfterFunc(ctx, d.resume)
	d.deliver()
}

// log returns the delivery's logger.
func (d *delivery) log() *slog.Logger {
	return d.k.pool.log.With("topic", d.topic, "partition", d.partition)
}

// recoverPanic logs a panic of the delivery and tells the client.
func (d *delivery) recoverPanic(ctx context.Context) {
	if p := recover(); p != nil {
		d.log().Error("kafka: subscription panic", "panic", p, "stack", string(debug.Stack()))
		d.fail(ctx, errors.New("internal error"))
	}
}

// resume continues a parked delivery with a goroutine of its own: its
// context ended.
func (d *delivery) resume() {
	if d.parked.CompareAndSwap(true, false) {
		go d.deliver()
	}
}

// resumeHere continues a parked delivery on the calling goroutine, that of
// its reader's change channel, until it parks again or would wait (then a
// goroutine of its own takes over): a record reaches the subscribers of a
// partition one after the other on one goroutine, without one wake-up each.
func (d *delivery) resumeHere() {
	if d.parked.CompareAndSwap(true, false) {
		d.parkedOn = nil // the channel's set ran: nothing to leave
		d.loop(false)
	}
}

// deliver runs the delivery on its own goroutine until it parks or ends.
func (d *delivery) deliver() { d.loop(true) }

// stepResult is what a delivery does after one step.
type stepResult int

const (
	stepAgain stepResult = iota // the cursor moved: step again
	stepPark                    // at the end of the log: wait for a change
	stepEnd                     // the subscription is over
	stepWait                    // the step must wait, which only a goroutine of the delivery's own may
)

// loop steps the delivery until it parks or ends; unless mayWait, it hands
// over to a goroutine of its own at the first step that must wait.
func (d *delivery) loop(mayWait bool) {
	ctx := d.ctx
	if d.parkedOn != nil {
		parked.remove(d.parkedOn, &d.wake) // woken by ctx: leave the channel's set
		d.parkedOn = nil
	}
	ended := true
	defer func() {
		if ended {
			d.done()
		}
	}()
	defer d.recoverPanic(ctx)
	for ctx.Err() == nil {
		next, changed := d.step(ctx, mayWait)
		switch next {
		case stepEnd:
			return
		case stepWait:
			ended = false
			go d.deliver()
			return
		case stepPark:
			if d.park(changed) {
				ended = false
				return
			}
		}
	}
}

// step pushes what the record cache, or with mayWait Kafka, holds at the
// cursor; without mayWait it returns stepWait instead of waiting (for
// Kafka, a backoff, room in the session's push queue or the time to tell
// the client its position).
func (d *delivery) step(ctx context.Context, mayWait bool) (stepResult, <-chan struct{}) {
	changed, end, gone := d.r.state()
	if ep := d.keptPush(); ep != nil {
		return d.caughtUp(d.lagged(end, d.send(ctx, ep, mayWait)), changed, end, gone)
	}
	out := newReply(d.cursor, d.maxRecords, int(d.k.cfg.FetchMaxBytes))
	list := stepLists.Get().(*[]*kgo.Record)
	out.records = (*list)[:0]
	defer recycleStepList(list, out)
	// The record cache first: at the end of the log it holds what came
	// since state, and a catch-up needs a deadline only for Kafka.
	check := d.cacheNeedsCheck()
	if check && !mayWait {
		return stepWait, nil
	}
	if err := d.confirmCached(ctx, check); err != nil {
		if terminal(err) {
			d.fail(ctx, err)
			return stepEnd, nil
		}
		d.log().Warn("kafka: subscription cannot check the record cache", "err", err)
		sleep(ctx, readerBackoff)
		return stepAgain, nil
	}
	if !d.k.cacheRead(d.key, d.cursor, out) && d.cursor < end {
		if !mayWait {
			return stepWait, nil
		}
		if err := d.catchUp(ctx, out); err != nil {
			if terminal(err) {
				d.fail(ctx, err)
				return stepEnd, nil
			}
			d.log().Warn("kafka: subscription catch-up failed", "err", err)
			sleep(ctx, readerBackoff)
			return stepAgain, nil
		}
	}
	switch {
	case len(out.records) > 0:
		return d.caughtUp(d.lagged(end, d.pushCached(ctx, out, mayWait)), changed, end, gone)
	case out.next > d.cursor:
		d.cursor = out.next // offsets that hold no data record
		return stepAgain, nil
	case (gone != nil || (d.cursor > d.told && !d.view.All())) && !mayWait:
		return stepWait, nil // telling the client may wait
	case gone != nil:
		d.fail(ctx, gone)
		return stepEnd, nil
	case d.cursor > d.told && !d.view.All():
		if !d.tellPositionWhenIdle(ctx, changed) {
			return stepEnd, nil
		}
		return stepAgain, nil
	}
	return stepPark, changed
}

// stepLists pools the record lists of the replies that delivery steps
// fill and push at once: a push of one record to each of many subscribers
// allocates no list per subscriber. Lists that grew beyond
// maxPooledStepList are left to the collector.
var stepLists = sync.Pool{New: func() any { return new([]*kgo.Record) }}

// maxPooledStepList bounds the lists stepLists keeps.
const maxPooledStepList = 64

// recycleStepList gives list, taken from stepLists for out, back with the
// records of out once its step pushed them (the push is encoded by then,
// and keeps no record list); out holds no list afterwards.
func recycleStepList(list *[]*kgo.Record, out *reply) {
	recs := out.records
	out.records = nil
	if cap(recs) > maxPooledStepList {
		return
	}
	clear(recs)
	*list = recs[:0]
	stepLists.Put(list)
}

// caughtUp turns next, the result of a push, into parking on changed when
// the push took the cursor to end, the end of the log as seen with changed:
// the step that would follow could only find that out again. Records that
// came since closed changed, which wakes the delivery at once.
func (d *delivery) caughtUp(next stepResult, changed <-chan struct{}, end int64, gone error) (stepResult, <-chan struct{}) {
	if next == stepAgain && d.cursor >= end && gone == nil && (d.cursor <= d.told || d.view.All()) {
		return stepPark, changed
	}
	return next, nil
}

// lagged reports the delivery's lag behind end once a push moved its
// cursor, and passes next on.
func (d *delivery) lagged(end int64, next stepResult) stepResult {
	if next == stepAgain {
		d.k.lagged(end, d.cursor)
	}
	return next
}

// park leaves the delivery waiting for changed or its context with no
// goroutine; it reports false when the delivery must go on with the
// calling goroutine (records came or its context ended meanwhile).
func (d *delivery) park(changed <-chan struct{}) bool {
	if isClosed(changed) {
		return false // records came already: go on here
	}
	d.parkedOn = changed
	d.parked.Store(true)
	parked.add(changed, &d.wake)
	// A context that ended, or a change fired, before the delivery was
	// parked found nothing to wake: either these checks see it, or the
	// wake sees the delivery parked.
	if (d.ctx.Err() == nil && !isClosed(changed)) || !d.parked.CompareAndSwap(true, false) {
		return true
	}
	parked.remove(changed, &d.wake)
	d.parkedOn = nil
	return false
}

// isClosed reports whether ch is closed.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// fail tells the client that the partition's delivery ends, and why.
func (d *delivery) fail(ctx context.Context, cause error) {
	d.req.Push(ctx, &pb.PubSubResp{Resp: &pb.PubSubResp_ErrorResp{ErrorResp: &pb.ErrorResp{
		Message: (&CommandError{Op: opSubscribe, Topic: d.topic, Partition: d.partition, Cause: cause}).Error(),
	}}})
}

// catchUp reads the partition at the cursor, which is before the end of
// the log: from the record cache, else from Kafka (the broker need not
// wait).
func (d *delivery) catchUp(ctx context.Context, out *reply) error {
	ctx, cancel := context.WithTimeout(ctx, d.k.cfg.RequestTimeout.Duration())
	defer cancel()
	return d.k.read(ctx, d.key, true, d.cursor, out)
}

// cacheNeedsCheck reports whether the record cache holds the cursor since
// before the last CacheCheckInterval, so that confirmCached asks Kafka.
func (d *delivery) cacheNeedsCheck() bool {
	return d.k.cache.heldBefore(d.key, d.cursor, time.Now().Add(-CacheCheckInterval))
}

// confirmCached makes sure, before the record cache answers at the cursor,
// that what it holds there is still in Kafka: records the shared reader
// cached within CacheCheckInterval are as fresh as a check; older ones (a
// subscriber behind the end of the log; check, from cacheNeedsCheck) join
// the partition's check, so that a DeleteRecords or a recreation of the
// topic since is seen at read time.
func (d *delivery) confirmCached(ctx context.Context, check bool) error {
	if !check {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, d.k.cfg.RequestTimeout.Duration())
	defer cancel()
	id, err := d.k.confirmCached(ctx, d.key.readerKey)
	if err == nil && id != d.key.topicID {
		err = ErrTopicNotFound // deleted and created again
	}
	return err
}

// push sends recs (data records of the partition, in offset order, none of
// them from the record cache) in pushes of at most maxRecords and the
// cluster's fetch byte limit, and advances the cursor; the last push goes
// on at next (at least after its last record). It reports whether the
// session still takes pushes.
func (d *delivery) push(ctx context.Context, recs []*kgo.Record, next int64) bool {
	for len(recs) > 0 {
		out := newReply(recs[0].Offset, d.maxRecords, int(d.k.cfg.FetchMaxBytes))
		for _, r := range recs {
			if !out.add(r) {
				break
			}
		}
		recs = recs[len(out.records):]
		if len(recs) == 0 {
			out.next = max(out.next, next)
		}
		if err := d.pushRecords(ctx, out.records, out.next); err != nil {
			return false
		}
		d.k.sent(d.tally, len(out.records))
		d.cursor = out.next
	}
	return true
}

// pushCached sends the records of out, records of the record cache, that
// the session sees, in one push encoded once for every subscriber of the
// same view that pushes the same records, and moves the cursor to the
// offset to ask for next. Records the session does not see move the cursor
// without a push, but for one that carries the position now and then.
// Unless mayWait, it returns stepWait rather than wait for room in the
// session's push queue.
func (d *delivery) pushCached(ctx context.Context, out *reply, mayWait bool) stepResult {
	ep, err := d.k.pushes.encode(d.topic, d.partition, d.cursor, out, d.view, d.k.cfg.WindowBytes)
	if err != nil {
		return stepEnd
	}
	return d.send(ctx, ep, mayWait)
}

// keptPush returns the push that another subscriber of the session's view
// read at the cursor, if it is kept and the record cache still holds its
// first record there; nil for a view of every record.
func (d *delivery) keptPush() *encodedPush {
	if d.view.All() {
		return nil
	}
	ep := d.k.pushes.startingAt(pushStart{d.key.readerKey, d.cursor, d.view.key, d.maxRecords})
	if ep == nil || d.k.cachedFirst(d.key, d.cursor) != ep.first {
		return nil
	}
	return ep
}

// send pushes ep, encoded for the session's view, and moves the cursor to
// its next_offset; when the view sees none of its records, it only moves
// the cursor, but for a push of the position now and then. Unless mayWait,
// it returns stepWait, having done nothing, where it would wait for room
// in the session's push queue.
func (d *delivery) send(ctx context.Context, ep *encodedPush, mayWait bool) stepResult {
	if ep.e == nil {
		due := time.Since(d.toldAt) >= positionPushInterval
		if due && !mayWait {
			return stepWait
		}
		d.cursor = ep.next
		if due && !d.tellPosition(ctx) {
			return stepEnd
		}
		return stepAgain
	}
	if mayWait {
		if err := d.req.PushEncoded(ctx, ep.e); err != nil {
			return stepEnd
		}
	} else if queued, err := d.req.TryPushEncoded(ep.e); err != nil {
		return stepEnd
	} else if !queued {
		return stepWait
	}
	d.k.sent(d.tally, ep.records)
	d.cursor = ep.next
	if !d.view.All() {
		d.told, d.toldAt = d.cursor, time.Now()
	}
	return stepAgain
}

// tellPosition pushes the cursor as next_offset, without records; it
// reports whether the session still takes pushes.
func (d *delivery) tellPosition(ctx context.Context) bool {
	if err := d.pushRecords(ctx, nil, d.cursor); err != nil {
		return false
	}
	d.told, d.toldAt = d.cursor, time.Now()
	return true
}

// tellPositionWhenIdle waits, at the end of the log with the cursor past
// records the client was not told of, until positionPushInterval has passed
// since it was last told and then tells it, unless changed (records came)
// or ctx ends first. It reports whether the session still takes pushes.
func (d *delivery) tellPositionWhenIdle(ctx context.Context, changed <-chan struct{}) bool {
	if wait := positionPushInterval - time.Since(d.toldAt); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-changed:
			return true
		case <-ctx.Done():
			return true
		case <-t.C:
		}
	}
	return d.tellPosition(ctx)
}

// terminal reports whether a catch-up failure ends the subscription of the
// partition rather than being retried: a Kafka error that retrying does
// not cure (OFFSET_OUT_OF_RANGE, TOPIC_AUTHORIZATION_FAILED, ...), a
// partition that is gone, or a batch the gateway refuses to decode.
func terminal(err error) bool {
	if ke, ok := errors.AsType[*kerr.Error](err); ok {
		return !ke.Retriable
	}
	return errors.Is(err, ErrTopicNotFound) || errors.Is(err, ErrPartitionNotFound) || errors.Is(err, ErrBatchTooLarge)
}

// topicPartitions lists the partitions of topic from (cached) metadata.
func (k *Cluster) topicPartitions(ctx context.Context, topic string) ([]int32, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = []kmsg.MetadataRequestTopic{rt}
	resp, err := k.cl.RequestCachedMetadata(ctx, req, 0)
	if err != nil {
		return nil, k.cause(ctx, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			if errors.Is(err, kerr.UnknownTopicOrPartition) {
				return nil, ErrTopicNotFound
			}
			return nil, k.cause(ctx, err)
		}
		ps := make([]int32, len(t.Partitions))
		for i, p := range t.Partitions {
			ps[i] = p.Partition
		}
		return ps, nil
	}
	return nil, ErrTopicNotFound
}
