// Command testkafka runs an in-memory Kafka (franz-go's kfake) for the
// TypeScript client's and the page's tests, in a process of its own so that
// the pub-sub server can be restarted while Kafka keeps its records.
//
// It prints {"brokers": [...]} on its first line, then reads one JSON
// request per line on stdin and answers each with one line. A produce
// request,
//
//	{"topic": "orders", "partition": 0, "count": 100, "first": 0, "size": 0}
//
// writes count records (key "k<first+i>", a JSON value padded to at least
// size bytes, a header) with the producer's default snappy compression, and
// prints {"offsets": [...]}. {"op": "delete_records", "topic": T,
// "partition": P, "offset": O} moves the partition's log start to O (as
// retention does), and {"op": "delete_topic", "topic": T} deletes a topic;
// both print {}. A failure prints {"error": "..."}. It exits when stdin
// closes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

type request struct {
	Op        string `json:"op"` // "" (produce), "delete_records" or "delete_topic"
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Count     int    `json:"count"`
	First     int    `json:"first"`
	Size      int    `json:"size"`
	Offset    int64  `json:"offset"`
}

type produceReply struct {
	Offsets []int64 `json:"offsets,omitempty"`
	Error   string  `json:"error,omitempty"`
}

func main() {
	topics := flag.String("topics", "demo:1", "comma-separated TOPIC:PARTITIONS to create")
	flag.Parse()
	if err := run(*topics); err != nil {
		fmt.Fprintln(os.Stderr, "testkafka:", err)
		os.Exit(1)
	}
}

func run(topics string) error {
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	for _, t := range strings.Split(topics, ",") {
		name, parts, ok := strings.Cut(t, ":")
		n, err := strconv.Atoi(parts)
		if !ok || err != nil || n < 1 {
			return fmt.Errorf("-topics: %q is not TOPIC:PARTITIONS", t)
		}
		opts = append(opts, kfake.SeedTopics(int32(n), name))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return err
	}
	defer c.Close()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(map[string][]string{"brokers": c.ListenAddrs()}); err != nil {
		return err
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var req request
		var reply produceReply
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			reply.Error = err.Error()
		} else {
			reply = handle(c, cl, req)
		}
		if err := out.Encode(reply); err != nil {
			return err
		}
	}
	return sc.Err()
}

// handle carries out one request.
func handle(c *kfake.Cluster, cl *kgo.Client, req request) (reply produceReply) {
	defer func() {
		if p := recover(); p != nil {
			reply = produceReply{Error: fmt.Sprintf("panic: %v\n%s", p, debug.Stack())}
		}
	}()
	var err error
	switch req.Op {
	case "":
		return produce(cl, req)
	case "delete_records":
		err = c.DeleteRecords(req.Topic, req.Partition, req.Offset)
	case "delete_topic":
		err = c.DeleteTopic(req.Topic)
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		reply.Error = err.Error()
	}
	return reply
}

// produce writes one request's records and reports their offsets.
func produce(cl *kgo.Client, req request) (reply produceReply) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := make([]*kgo.Record, req.Count)
	for i := range recs {
		n := req.First + i
		fields := map[string]any{"n": n, "topic": req.Topic, "note": "record " + strconv.Itoa(n)}
		if req.Size > 0 {
			fields["pad"] = strings.Repeat("x", req.Size)
		}
		value, _ := json.Marshal(fields)
		recs[i] = &kgo.Record{
			Topic:     req.Topic,
			Partition: req.Partition,
			Key:       []byte("k" + strconv.Itoa(n)),
			Value:     value,
			Headers:   []kgo.RecordHeader{{Key: "source", Value: []byte("testkafka")}},
		}
	}
	res := cl.ProduceSync(ctx, recs...)
	if err := res.FirstErr(); err != nil {
		return produceReply{Error: err.Error()}
	}
	for _, r := range res {
		reply.Offsets = append(reply.Offsets, r.Record.Offset)
	}
	return reply
}
