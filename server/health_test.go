package server_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/envoy-pubsub/gateway/server"
)

func TestAcceptingSaysWhyNoSessionWouldStart(t *testing.T) {
	srv, _ := startServer(t, "", "max_sessions: 1")
	if err := srv.Server.Accepting(); err != nil {
		t.Fatalf("an idle server: %v", err)
	}
	srv.Dial(t, "kafka")
	if err := srv.Server.Accepting(); err == nil || !strings.Contains(err.Error(), "too many sessions (1)") {
		t.Fatalf("a server at max_sessions: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	if err := srv.Server.Accepting(); !errors.Is(err, server.ErrShuttingDown) {
		t.Fatalf("a server that shut down: %v", err)
	}
}
