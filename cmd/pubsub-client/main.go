// Command pubsub-client reads and writes Kafka topics through a pub-sub
// endpoint with kcat's flags.
//
// Reading (the default, -C) subscribes once to every partition of -t (or
// the one of -p), from -o (beginning, end, N, -N, s@MILLISECONDS), and
// prints each record: a descriptive line, -f with kcat's % tokens, or -J
// with kcat's JSON fields. -e exits at the end of the log, -c N after N
// records; -G GROUP reads as a member of a consumer group and commits what
// it printed.
//
// Producing (-P) writes every line of standard input as a record (KEY<sep>
// VALUE with -K), with the headers of -H, in requests of the lines that are
// ready (at most -batch), and prints each record's partition and offset
// once Kafka has acknowledged it.
//
// Errors go to standard error with the server's message; the exit status
// is then 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status. Ending ctx
// (SIGINT, SIGTERM) ends reading or producing with status 0, after a group
// member's last commit.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 1
	}
	if err = serve(ctx, o, stdin, stdout, stderr); err != nil && !(ctx.Err() != nil && errors.Is(err, ctx.Err())) {
		fmt.Fprintln(stderr, "pubsub-client:", err)
		return 1
	}
	return 0
}

// serve connects and reads or produces as o says.
func serve(ctx context.Context, o *options, stdin io.Reader, stdout, stderr io.Writer) error {
	c, err := dial(ctx, o, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	if o.produce {
		return newProducer(o).run(ctx, c, stdin, stdout)
	}
	r, err := newReader(c, o, stdout)
	if err != nil {
		return err
	}
	return r.run(ctx)
}
