package server_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/server"
)

func TestKafkaRouteRefusesWith502WithoutAClient(t *testing.T) {
	doc, err := config.Parse([]byte(`{"kafka_clusters": {"orders": {"brokers": ["127.0.0.1:1"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	pool := kafka.NewPool(kafka.Logger(log))
	pool.Close() // a closed pool makes no client
	c := doc.KafkaClusters["orders"]
	_, err = server.KafkaRoute(pool, "orders", c, kafka.NewPolicy(c), log)
	var refusal *server.Error
	if !errors.As(err, &refusal) || refusal.Status != http.StatusBadGateway || refusal.Message != "kafka cluster unavailable" {
		t.Fatalf("got %v, want 502 kafka cluster unavailable", err)
	}
	if !strings.Contains(logs.String(), "cluster=orders") {
		t.Errorf("the failure is not logged with its cluster: %q", logs.String())
	}
}
