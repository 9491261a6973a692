package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/envoy-pubsub/gateway/client"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// producer writes the lines of its input as records (-P).
type producer struct {
	topic string
	// partition receives every record; -1 lets Kafka's default partitioner
	// place each by its key.
	partition int32
	// keySep splits a line at its first occurrence into key and value;
	// empty: the whole line is the value, without a key.
	keySep string
	// headers are set on every record.
	headers []*pb.KafkaHeader
	// batch is the most records per produce request.
	batch int
}

// newProducer returns the producer options ask for.
func newProducer(o *options) producer {
	p := producer{topic: o.topic, partition: -1, keySep: o.keySep, headers: o.headers, batch: o.batch}
	if o.partitionSet {
		p.partition = o.partition
	}
	return p
}

// run writes the lines of in, in requests of the lines that are ready (at
// most batch), and prints where each record went to out.
func (p producer) run(ctx context.Context, c *client.Client, in io.Reader, out io.Writer) error {
	lines := make(chan string, p.batch)
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
		recs := []*pb.KafkaRecord{p.record(line)}
	more:
		for len(recs) < p.batch {
			select {
			case line, ok := <-lines:
				if !ok {
					break more
				}
				recs = append(recs, p.record(line))
			default:
				break more
			}
		}
		offsets, err := c.Produce(ctx, p.topic, p.partition, recs...)
		if err != nil {
			return err
		}
		for _, o := range offsets {
			fmt.Fprintf(out, "partition=%d offset=%d\n", o.GetPartition(), o.GetOffset())
		}
	}
}

// record makes a record of one input line.
func (p producer) record(line string) *pb.KafkaRecord {
	rec := &pb.KafkaRecord{Value: []byte(line), Headers: p.headers}
	if p.keySep != "" {
		if key, value, ok := strings.Cut(line, p.keySep); ok {
			rec.Key, rec.Value = []byte(key), []byte(value)
		}
	}
	return rec
}
