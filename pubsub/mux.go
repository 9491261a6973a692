// Package pubsub is the transport-agnostic session engine of the pub-sub
// protocol: it serves one WebSocket connection on any net.Conn after the
// HTTP upgrade, decodes PubSubReq frames, dispatches each command to the
// handler registered for it, and writes PubSubResp frames that echo the
// request's sequence. It knows nothing of Kafka or Envoy: a message system
// plugs in by registering handlers for its commands on a Mux.
package pubsub

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/envoy-pubsub/gateway/proto"
)

// Command names, as the PubSubReq oneof fields spell them.
const (
	CmdEmpty           = "cmd_empty"
	CmdPing            = "cmd_ping"
	CmdKafkaFetch      = "cmd_kafka_fetch"
	CmdKafkaListOffset = "cmd_kafka_list_offset"
	// CmdKafkaSubscribe and CmdKafkaUnsubscribe are this project's streaming
	// extension.
	CmdKafkaSubscribe   = "cmd_kafka_subscribe"
	CmdKafkaUnsubscribe = "cmd_kafka_unsubscribe"
	// CmdKafkaProduce, CmdKafkaCommit and CmdKafkaCommitted are this
	// project's write and committed-offset extension.
	CmdKafkaProduce   = "cmd_kafka_produce"
	CmdKafkaCommit    = "cmd_kafka_commit"
	CmdKafkaCommitted = "cmd_kafka_committed"
	// CmdAuth is this project's in-band credential refresh.
	CmdAuth = "cmd_auth"
)

// Handler answers one command. It returns the reply to send (its sequence is
// filled in by the engine) or an error, which the client receives as an
// error_resp whose message is the error's text. A handler may also send
// further replies with Request.Push (streaming commands); it may return a nil
// reply and nil error to send nothing more, or to send the body it set with
// Request.ReplyWith (a reply it encodes itself).
type Handler interface {
	ServePubSub(ctx context.Context, req *Request) (*pb.PubSubResp, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) (*pb.PubSubResp, error)

// ServePubSub calls f.
func (f HandlerFunc) ServePubSub(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
	return f(ctx, req)
}

// reqOneof is the descriptor of PubSubReq's command oneof.
var reqOneof = (&pb.PubSubReq{}).ProtoReflect().Descriptor().Oneofs().ByName("req")

// Commands returns the name of every command of the protocol (the fields of
// PubSubReq's command oneof), in the schema's order.
func Commands() []string {
	fields := reqOneof.Fields()
	names := make([]string, fields.Len())
	for i := range names {
		names[i] = string(fields.Get(i).Name())
	}
	return names
}

// Mux dispatches requests to the handler registered for their command. A new
// Mux answers cmd_ping; every other command needs a handler. Register all
// handlers before serving; a Mux is read-only while sessions use it.
type Mux struct {
	// handlers are by the command's position in the oneof: a session's
	// Mux is a few words, not a map.
	handlers []Handler
}

// commandPositions maps each command to its position in the oneof.
var commandPositions = func() map[protoreflect.Name]int {
	fields := reqOneof.Fields()
	m := make(map[protoreflect.Name]int, fields.Len())
	for i := range fields.Len() {
		m[fields.Get(i).Name()] = i
	}
	return m
}()

// NewMux returns a Mux that answers cmd_ping.
func NewMux() *Mux {
	m := &Mux{handlers: make([]Handler, len(commandPositions))}
	m.On(CmdPing, HandlerFunc(pong))
	return m
}

// On registers h for command, a field name of PubSubReq's command oneof
// (e.g. "cmd_kafka_fetch"). It panics if the command does not exist in the
// schema, which is a programming error.
func (m *Mux) On(command string, h Handler) {
	i, ok := commandPositions[protoreflect.Name(command)]
	if !ok {
		panic(fmt.Sprintf("pubsub: %q is not a PubSubReq command", command))
	}
	m.handlers[i] = h
}

// ErrUnknownCommand answers a command that has no handler.
var ErrUnknownCommand = errors.New("unknown command")

// ServePubSub dispatches req to the handler of its command.
func (m *Mux) ServePubSub(ctx context.Context, req *Request) (*pb.PubSubResp, error) {
	i, ok := commandPositions[protoreflect.Name(req.Command)]
	if !ok || m.handlers[i] == nil {
		return nil, ErrUnknownCommand
	}
	return m.handlers[i].ServePubSub(ctx, req)
}

func pong(_ context.Context, req *Request) (*pb.PubSubResp, error) {
	return &pb.PubSubResp{Resp: &pb.PubSubResp_PongResp{
		PongResp: &pb.PongResp{State: req.Msg.GetCmdPing().GetState()},
	}}, nil
}

// commandOf returns the name of the command set in req, or "" if none is.
func commandOf(req *pb.PubSubReq) protoreflect.Name {
	fd := req.ProtoReflect().WhichOneof(reqOneof)
	if fd == nil {
		return ""
	}
	return fd.Name()
}
