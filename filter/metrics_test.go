package filter

import (
	"errors"
	"testing"

	"github.com/envoy-pubsub/gateway/pubsub"
)

func TestEveryCommandIsCountedWithItsErrors(t *testing.T) {
	stats := newConfigCallbacks()
	m := defineMetrics(stats)
	commands := []string{
		pubsub.CmdEmpty, pubsub.CmdPing, pubsub.CmdKafkaFetch, pubsub.CmdKafkaListOffset,
		pubsub.CmdKafkaSubscribe, pubsub.CmdKafkaUnsubscribe,
		pubsub.CmdKafkaProduce, pubsub.CmdKafkaCommit, pubsub.CmdKafkaCommitted,
		"cmd_auth", // proto extension 105; pubsub has no constant for it yet
	}
	if got := pubsub.Commands(); len(got) != len(commands) {
		t.Fatalf("the protocol has commands %v; add the new ones to this test", got)
	}
	for _, c := range commands {
		m.Command(c, nil)
		m.Command(c, errors.New("refused"))
	}
	for _, c := range commands {
		if n := stats.value(statCommandPrefix + c); n != 2 {
			t.Errorf("%s%s = %d, want 2", statCommandPrefix, c, n)
		}
		if n := stats.value(statCommandErrPrefix + c); n != 1 {
			t.Errorf("%s%s = %d, want 1", statCommandErrPrefix, c, n)
		}
	}
	if n := stats.value(statCommandsTotal); n != int64(2*len(commands)) {
		t.Errorf("%s = %d, want %d", statCommandsTotal, n, 2*len(commands))
	}
}
