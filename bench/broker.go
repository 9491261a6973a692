package bench

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kfake"
)

// brokerReady is what the broker child reports when it listens.
type brokerReady struct {
	Brokers []string `json:"brokers"`
}

// startBroker starts a one-broker kfake in a child process with topics,
// each given as NAME:PARTITIONS.
func startBroker(topics []string) (*child, []string, error) {
	var ready brokerReady
	c, err := startChild(RoleBroker, &ready, "-topics", strings.Join(topics, ","))
	if err != nil {
		return nil, nil, err
	}
	return c, ready.Brokers, nil
}

// runBroker is the broker child: an in-memory kfake on a loopback port.
func runBroker(args []string) error {
	fs := flag.NewFlagSet(RoleBroker, flag.ContinueOnError)
	topics := fs.String("topics", "", "comma-separated NAME:PARTITIONS topics to create")
	if err := fs.Parse(args); err != nil {
		return err
	}
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	for _, t := range strings.Split(*topics, ",") {
		name, partitions, ok := strings.Cut(t, ":")
		n, err := strconv.Atoi(partitions)
		if !ok || err != nil || n < 1 {
			return fmt.Errorf("-topics: %q is not NAME:PARTITIONS", t)
		}
		opts = append(opts, kfake.SeedTopics(int32(n), name))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("kfake: %w", err)
	}
	defer c.Close()
	return serveCommands(brokerReady{Brokers: c.ListenAddrs()}, func(command string) (any, error) {
		if command == "stats" {
			return readProcessStats(), nil
		}
		return nil, errUnknownCommand
	})
}
