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
		pubsub.CmdKafkaProduce, pubsub.CmdKafkaCommit, pubsub.CmdKafkaCommitted, pubsub.CmdAuth,
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

func TestDetailedEventsReachEnvoyCountersUnderThePrometheusNames(t *testing.T) {
	stats := newConfigCallbacks()
	sink := defineMetrics(stats).Sink()
	sink.BytesRead(10)
	sink.BytesWritten(20)
	sink.Pushed(3)
	sink.BudgetWaited()
	sink.SessionClosed(1000)
	sink.SessionClosed(4008)
	sink.SessionClosed(4401)
	sink.CacheLookup(true)
	sink.CacheLookup(false)
	sink.CacheLookup(false)
	sink.Delivered(7)
	for name, want := range map[string]int64{
		statBytesReceived: 10, statBytesSent: 20, statPushes: 3, statBudgetWaits: 1,
		statSessionsClosed: 3, statSlowConsumer: 1, statTokenExpiries: 1,
		statCacheHits: 1, statCacheMisses: 2, statDelivered: 7,
	} {
		if got := stats.value(name); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
}
