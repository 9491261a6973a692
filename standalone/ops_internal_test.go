package standalone

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/server"
)

// A panic while checking a cluster for /readyz makes that cluster not
// ready and is logged with its stack, like every recovered panic.
func TestReadinessLogsAPanicOfAClusterCheck(t *testing.T) {
	pool := kafka.NewPool()
	defer pool.Close()
	var logs bytes.Buffer // written by the check's goroutines before check returns
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ready := &readiness{
		sessions: server.New(nil, server.Options{Logger: log}),
		pool:     pool,
		// A cluster without its configuration: acquiring it panics.
		clusters: &resolver{clusters: map[string]*config.KafkaCluster{"broken": nil}, order: []string{"broken"}},
		timeout:  time.Second,
		log:      log,
	}
	err := ready.check(context.Background())
	if err == nil || err.Error() != "cluster broken: internal error" {
		t.Fatalf("check = %v, want cluster broken: internal error", err)
	}
	if out := logs.String(); !strings.Contains(out, "readiness check panic") || !strings.Contains(out, "cluster=broken") || !strings.Contains(out, "stack=") {
		t.Fatalf("the panic was not logged with its cluster and stack:\n%s", out)
	}
}
