package kafka_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	"github.com/envoy-pubsub/gateway/kafka"
	pb "github.com/envoy-pubsub/gateway/proto"
	"github.com/envoy-pubsub/gateway/pubsub"
	"github.com/envoy-pubsub/gateway/server"
)

// policyRequest builds a request of one command naming topic and, when
// namesGroup, group.
type policyRequest struct {
	build      func(topic, group string) *pb.PubSubReq
	namesGroup bool
}

// policyCommands lists every PubSubReq command with the requests that
// exercise its policy check (none for a command that names no topic).
// TestEveryCommandIsInThePolicyTable fails when the schema gains a command
// that is not listed here, so that no command is added without a test of its
// policy check.
var policyCommands = map[string][]policyRequest{
	pubsub.CmdEmpty:            nil,
	pubsub.CmdPing:             nil,
	pubsub.CmdKafkaUnsubscribe: nil,
	pubsub.CmdAuth:             nil,
	pubsub.CmdKafkaFetch: {{build: func(topic, _ string) *pb.PubSubReq {
		return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaFetch{CmdKafkaFetch: &pb.CmdKafkaFetch{Topic: topic}}}
	}}},
	pubsub.CmdKafkaListOffset: {{build: func(topic, _ string) *pb.PubSubReq {
		return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaListOffset{CmdKafkaListOffset: &pb.CmdKafkaListOffset{Topic: topic, Timestamp: -1}}}
	}}},
	pubsub.CmdKafkaSubscribe: {
		{build: func(topic, _ string) *pb.PubSubReq {
			return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaSubscribe{CmdKafkaSubscribe: &pb.CmdKafkaSubscribe{Topic: topic}}}
		}},
		{namesGroup: true, build: func(topic, group string) *pb.PubSubReq {
			return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaSubscribe{CmdKafkaSubscribe: &pb.CmdKafkaSubscribe{Topic: topic, Group: group}}}
		}},
	},
	pubsub.CmdKafkaProduce: {{build: func(topic, _ string) *pb.PubSubReq {
		return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaProduce{CmdKafkaProduce: &pb.CmdKafkaProduce{
			Topic: topic, Records: []*pb.KafkaRecord{{Value: []byte("v")}},
		}}}
	}}},
	pubsub.CmdKafkaCommit: {{namesGroup: true, build: func(topic, group string) *pb.PubSubReq {
		return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaCommit{CmdKafkaCommit: &pb.CmdKafkaCommit{
			Group: group, Topic: topic, Offsets: []*pb.KafkaPartitionOffset{{Partition: 0, Offset: 0}},
		}}}
	}}},
	pubsub.CmdKafkaCommitted: {{namesGroup: true, build: func(topic, group string) *pb.PubSubReq {
		return &pb.PubSubReq{Req: &pb.PubSubReq_CmdKafkaCommitted{CmdKafkaCommitted: &pb.CmdKafkaCommitted{Group: group, Topic: topic}}}
	}}},
}

func TestEveryCommandIsInThePolicyTable(t *testing.T) {
	fields := (&pb.PubSubReq{}).ProtoReflect().Descriptor().Oneofs().ByName("req").Fields()
	for i := range fields.Len() {
		name := string(fields.Get(i).Name())
		if _, ok := policyCommands[name]; !ok {
			t.Errorf("command %s is not in policyCommands: add it with a request naming a topic, so that its policy check is tested", name)
		}
	}
	for name := range policyCommands {
		if fields.ByName(protoreflect.Name(name)) == nil {
			t.Errorf("policyCommands lists %s, which is not a PubSubReq command", name)
		}
	}
}

// policyResolver serves every session with the levels of allow-lists a
// session behind Envoy gets: the cluster's, then virtual host, route and
// weighted cluster.
type policyResolver struct {
	pool    *kafka.Pool
	cluster *config.KafkaCluster
	routes  []*config.Route
}

func (r *policyResolver) Resolve(*http.Request) (server.Route, error) {
	return server.KafkaRoute(r.pool, "kafka", r.cluster, kafka.NewPolicy(r.cluster, r.routes...), slog.Default())
}

// startPolicyServer serves cluster narrowed by routes on a loopback port.
func startPolicyServer(t *testing.T, cluster *config.KafkaCluster, routes ...*config.Route) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool := kafka.NewPool(kafka.Logger(log))
	srv := server.New(&policyResolver{pool: pool, cluster: cluster, routes: routes}, server.Options{Logger: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Shutdown(ctx(t))
		pool.Close()
	})
	return "ws://" + ln.Addr().String() + "/"
}

// parseCluster returns cluster "kafka" of a document serving brokers with
// the allow-lists topics, produce_topics and groups all set to list.
func parseCluster(t *testing.T, brokers []string, list []string) *config.KafkaCluster {
	t.Helper()
	js, err := json.Marshal(list)
	if err != nil {
		t.Fatal(err)
	}
	lists := fmt.Sprintf("    topics: %s\n    produce_topics: %s\n    groups: %s\n", js, js, js)
	doc, err := config.Parse([]byte(testkit.ClusterYAML(brokers, lists, "")))
	if err != nil {
		t.Fatal(err)
	}
	return doc.KafkaClusters["kafka"]
}

// dialURL connects a client to url; it is closed with the test.
func dialURL(t *testing.T, url string) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx(t), url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEveryLevelsListAppliesToEveryCommand sends every command that names a
// topic with a topic (and every command that names a group with a group)
// that exactly one level of allow-lists denies: each is refused with "topic
// not allowed" or "group not allowed", and Kafka never hears of the name.
// Names every level allows are not refused.
func TestEveryLevelsListAppliesToEveryCommand(t *testing.T) {
	levels := []string{"cluster", "vhost", "route", "weighted"}
	all := []string{"ok"}
	for _, l := range levels {
		all = append(all, "denied-by-"+l)
	}
	k := testkit.Kafka(t, kfake.SeedTopics(1, all...))
	var leaked atomic.Int32
	k.Control(func(req kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		if bytes.Contains(req.AppendTo(nil), []byte("denied-by-")) {
			leaked.Add(1)
		}
		return nil, nil, false
	})
	// Each level allows every name but its own denied one (globs and
	// exact names mixed), for reading, producing and groups alike.
	allowAllBut := func(level string) []string {
		list := []string{"o?"}
		for _, l := range levels {
			if l != level {
				list = append(list, "denied-by-"+l)
			}
		}
		return list
	}
	route := func(level string) *config.Route {
		l := allowAllBut(level)
		return &config.Route{Topics: l, ProduceTopics: l, Groups: l}
	}
	url := startPolicyServer(t, parseCluster(t, k.ListenAddrs(), allowAllBut("cluster")),
		route("vhost"), route("route"),
		nil, // a level without a document does not narrow
		route("weighted"),
	)
	c := dialURL(t, url)
	for name, reqs := range policyCommands {
		for _, r := range reqs {
			for _, l := range levels {
				denied := "denied-by-" + l
				_, err := c.Do(ctx(t), r.build(denied, "ok"))
				msg := serverError(t, err)
				if !strings.Contains(msg, ", topic: "+denied+", partition: ") || !strings.HasSuffix(msg, ", err: topic not allowed") {
					t.Errorf("%s on a topic the %s denies: %q, want topic not allowed", name, l, msg)
				}
				if !r.namesGroup {
					continue
				}
				_, err = c.Do(ctx(t), r.build("ok", denied))
				if msg := serverError(t, err); !strings.HasSuffix(msg, ", topic: ok, partition: "+partitionOf(msg)+", err: group not allowed") {
					t.Errorf("%s with a group the %s denies: %q, want group not allowed", name, l, msg)
				}
			}
			if _, err := c.Do(ctx(t), r.build("ok", "ok")); err != nil {
				t.Errorf("%s on names every level allows: %v", name, err)
			}
		}
	}
	if n := leaked.Load(); n != 0 {
		t.Fatalf("Kafka saw %d requests naming a denied topic or group", n)
	}
}

// partitionOf returns the partition an error message names.
func partitionOf(msg string) string {
	_, after, _ := strings.Cut(msg, ", partition: ")
	p, _, _ := strings.Cut(after, ",")
	return p
}
