// Command pubsub-client reads a Kafka partition through a pub-sub endpoint,
// the way an APISIX client does: list an offset, then fetch from it and
// continue at the last offset + 1. It prints one line per record.
//
// With -produce it writes instead: every line of standard input becomes a
// record (KEY<sep>VALUE with -key-separator), sent in requests of the lines
// that are ready, at most -batch; it prints each record's partition and
// offset once Kafka has acknowledged it.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/envoy-pubsub/gateway/client"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// pingInterval is how often the client pings the server (-ping-interval).
var pingInterval = flag.Duration("ping-interval", 30*time.Second, "send a WebSocket ping this often and give up on a server that does not answer within as long; 0 sends none")

func main() {
	url := flag.String("url", "ws://127.0.0.1:9080/kafka", "pub-sub endpoint")
	topic := flag.String("topic", "demo", "topic to read or write")
	partition := flag.Int("partition", 0, "partition to read or write (-produce: -1 partitions by key)")
	from := flag.String("from", "earliest", "earliest, latest, an offset, or a timestamp in ms prefixed with @")
	follow := flag.Bool("follow", true, "keep reading new records at the end of the log")
	header := flag.String("header", "", "extra upgrade header, NAME:VALUE")
	produce := flag.Bool("produce", false, "write the lines of standard input to the topic instead of reading it")
	keySep := flag.String("key-separator", "", "-produce: split each line at the first separator into key and value")
	batch := flag.Int("batch", 100, "-produce: most records per request")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *produce {
		err = runProduce(ctx, os.Stdin, os.Stdout, *url, *header, *topic, int32(*partition), *keySep, *batch)
	} else {
		err = run(ctx, *url, *topic, int32(*partition), *from, *follow, *header)
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "pubsub-client:", err)
		os.Exit(1)
	}
}

// dial connects to url with the extra upgrade header NAME:VALUE, if any,
// pinging the server every -ping-interval.
func dial(ctx context.Context, url, header string) (*client.Client, error) {
	opts := client.Options{PingInterval: *pingInterval}
	if name, value, ok := strings.Cut(header, ":"); ok {
		opts.Header = http.Header{name: {value}}
	}
	return client.Dial(ctx, url, opts)
}

func run(ctx context.Context, url, topic string, partition int32, from string, follow bool, header string) error {
	c, err := dial(ctx, url, header)
	if err != nil {
		return err
	}
	defer c.Close()
	offset, err := startOffset(ctx, c, topic, partition, from)
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		msgs, err := c.Fetch(ctx, topic, partition, offset)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			fmt.Printf("offset=%d timestamp=%s key=%q value=%q\n", m.GetOffset(),
				time.UnixMilli(m.GetTimestamp()).UTC().Format(time.RFC3339Nano), m.GetKey(), m.GetValue())
			offset = m.GetOffset() + 1
		}
		if len(msgs) == 0 && !follow {
			return nil
		}
	}
	return nil
}

func startOffset(ctx context.Context, c *client.Client, topic string, partition int32, from string) (int64, error) {
	switch {
	case from == "earliest":
		return c.ListOffset(ctx, topic, partition, -2)
	case from == "latest":
		return c.ListOffset(ctx, topic, partition, -1)
	case len(from) > 1 && from[0] == '@':
		ts, err := strconv.ParseInt(from[1:], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("-from: %w", err)
		}
		return c.ListOffset(ctx, topic, partition, ts)
	}
	return strconv.ParseInt(from, 10, 64)
}

// runProduce writes the lines of in to topic, in requests of the lines that
// are ready (at most batch), and prints where each record went.
func runProduce(ctx context.Context, in io.Reader, out io.Writer, url, header, topic string, partition int32, keySep string, batch int) error {
	if batch <= 0 {
		return fmt.Errorf("-batch must be positive")
	}
	c, err := dial(ctx, url, header)
	if err != nil {
		return err
	}
	defer c.Close()
	lines := make(chan string, batch)
	readErr := make(chan error, 1)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		readErr <- sc.Err()
	}()
	for {
		line, ok := <-lines
		if !ok {
			select {
			case err := <-readErr:
				return err
			default:
				return ctx.Err()
			}
		}
		recs := []*pb.KafkaRecord{toRecord(line, keySep)}
	more:
		for len(recs) < batch {
			select {
			case line, ok := <-lines:
				if !ok {
					break more
				}
				recs = append(recs, toRecord(line, keySep))
			default:
				break more
			}
		}
		offsets, err := c.Produce(ctx, topic, partition, recs...)
		if err != nil {
			return err
		}
		for _, o := range offsets {
			fmt.Fprintf(out, "partition=%d offset=%d\n", o.GetPartition(), o.GetOffset())
		}
	}
}

// toRecord makes a record of one input line.
func toRecord(line, keySep string) *pb.KafkaRecord {
	if keySep != "" {
		if key, value, ok := strings.Cut(line, keySep); ok {
			return &pb.KafkaRecord{Key: []byte(key), Value: []byte(value)}
		}
	}
	return &pb.KafkaRecord{Value: []byte(line)}
}
