package kafka

import (
	"context"
	"time"

	"github.com/envoy-pubsub/gateway/metrics"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
)

// NewHandler returns the handler of one session's commands on the shared
// client k, for a session that may do what policy allows: it serves the
// Kafka commands and answers cmd_ping, and any other command gets
// pubsub.ErrUnknownCommand. It is the session's whole handler state: no Mux
// or function value per command is made for it.
func NewHandler(k *Cluster, policy Policy) pubsub.Handler {
	return &handlers{k: k, policy: policy, lane: k.turns.newLane()}
}

// otherCommands answers the commands that are not Kafka's (cmd_ping); it
// is shared by every session and never changed.
var otherCommands = pubsub.NewMux()

// ServePubSub serves one command of the session.
func (h *handlers) ServePubSub(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
	switch req.Command {
	case pubsub.CmdKafkaListOffset:
		return h.listOffset(ctx, req)
	case pubsub.CmdKafkaFetch:
		return h.fetch(ctx, req)
	case pubsub.CmdKafkaSubscribe:
		return h.subscribe(ctx, req)
	case pubsub.CmdKafkaUnsubscribe:
		return h.unsubscribe(ctx, req)
	case pubsub.CmdKafkaProduce:
		return h.produce(ctx, req)
	case pubsub.CmdKafkaCommit:
		return h.commit(ctx, req)
	case pubsub.CmdKafkaCommitted:
		return h.committed(ctx, req)
	}
	return otherCommands.ServePubSub(ctx, req)
}

// handlers serve one session's Kafka commands.
type handlers struct {
	k       *Cluster
	policy  Policy
	subs    subscriptions
	members members
	writes  produceState
	lane    *brokerLane // the session's turn at the brokers
}

const (
	opListOffset = "list offset"
	opFetch      = "fetch message"
)

func (h *handlers) listOffset(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
	cmd := req.Msg.GetCmdKafkaListOffset()
	topic, partition := cmd.GetTopic(), cmd.GetPartition()
	fail := func(cause error) (*pb.PubSubResp, error) {
		return nil, &CommandError{Op: opListOffset, Topic: topic, Partition: partition, Cause: cause}
	}
	if err := h.policy.checkRead(topic); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(withLane(ctx, h.lane), h.k.cfg.RequestTimeout.Duration())
	defer cancel()
	offset, err := h.k.ListOffset(ctx, topic, partition, cmd.GetTimestamp())
	if err != nil {
		return fail(err)
	}
	return &pb.PubSubResp{Resp: &pb.PubSubResp_KafkaListOffsetResp{
		KafkaListOffsetResp: &pb.KafkaListOffsetResp{Offset: offset},
	}}, nil
}

func (h *handlers) fetch(ctx context.Context, req *pubsub.Request) (*pb.PubSubResp, error) {
	start := time.Now()
	cmd := req.Msg.GetCmdKafkaFetch()
	topic, partition := cmd.GetTopic(), cmd.GetPartition()
	if err := h.policy.checkRead(topic); err != nil {
		return nil, &CommandError{Op: opFetch, Topic: topic, Partition: partition, Cause: err}
	}
	// A broker fetch reserves its bytes in the reply budget before it is
	// sent (a wait at the end of the log holds none).
	ctx, cancel := context.WithTimeout(withReply(withLane(ctx, h.lane), req), h.k.cfg.RequestTimeout.Duration())
	defer cancel()
	view := View{Scope: h.policy.ReadScope(topic), Filter: MatchFilter(cmd.GetFilter())}
	body := recordsReplies.Get().(*recordsReply)
	out := body.newReply(cmd.GetOffset(), int(h.k.cfg.FetchMaxBytes), view.All())
	err := h.k.fetchReply(ctx, topic, partition, out)
	if err == nil && out.unpackable {
		// A record the reply cannot carry packed: its records tell why.
		out = body.newReply(cmd.GetOffset(), int(h.k.cfg.FetchMaxBytes), false)
		err = h.k.fetchReply(ctx, topic, partition, out)
	}
	if err == nil && !view.All() {
		h.k.readVisible(ctx, topic, partition, view, cmd.GetOffset(), out)
	}
	records, bytes := len(out.records), recordsBytes(out.records)
	if err == nil {
		if out.packed {
			body.setPacked(out.parts, out.next)
			records, bytes = out.n, out.bytes
		} else {
			err = body.set("", 0, out.records, out.next)
		}
	}
	if err != nil {
		body.release()
		return nil, &CommandError{Op: opFetch, Topic: topic, Partition: partition, Cause: err}
	}
	// Records of the cache are in memory already; the reply encoded from
	// them is not, until its bytes are reserved.
	if err := req.Reserve(ctx, bytes); err != nil {
		body.release()
		return nil, &CommandError{Op: opFetch, Topic: topic, Partition: partition, Cause: h.k.cause(ctx, err)}
	}
	// The records must stay in the reply until it is written.
	req.AfterReply(body.release)
	tally := metrics.TallyFrom(ctx)
	tally.Touch(topic, partition)
	h.k.sent(tally, records)
	h.k.pool.metrics.FetchReply(time.Since(start))
	req.ReplyWith(body)
	return nil, nil
}
