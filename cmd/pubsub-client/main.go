// Command pubsub-client reads a Kafka partition through a pub-sub endpoint,
// the way an APISIX client does: list an offset, then fetch from it and
// continue at the last offset + 1. It prints one line per record.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/envoy-pubsub/gateway/client"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:9080/kafka", "pub-sub endpoint")
	topic := flag.String("topic", "demo", "topic to read")
	partition := flag.Int("partition", 0, "partition to read")
	from := flag.String("from", "earliest", "earliest, latest, an offset, or a timestamp in ms prefixed with @")
	follow := flag.Bool("follow", true, "keep reading new records at the end of the log")
	header := flag.String("header", "", "extra upgrade header, NAME:VALUE")
	ping := flag.Duration("ping-interval", 30*time.Second, "send a WebSocket ping this often and give up on a server that does not answer within as long; 0 sends none")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *url, *topic, int32(*partition), *from, *follow, *header, *ping); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "pubsub-client:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, url, topic string, partition int32, from string, follow bool, header string, ping time.Duration) error {
	opts := client.Options{PingInterval: ping}
	if header != "" {
		for i := 0; i < len(header); i++ {
			if header[i] == ':' {
				opts.Header = http.Header{header[:i]: {header[i+1:]}}
				break
			}
		}
	}
	c, err := client.Dial(ctx, url, opts)
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
