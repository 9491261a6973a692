package testkit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/envoy-pubsub/gateway/client"
)

// Ping sends cmd_ping on c and fails the test unless it is answered within
// 10 seconds.
func Ping(t testing.TB, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, nil); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

// WaitClosed waits up to 10 seconds for the server to close c and returns
// the close frame it sent.
func WaitClosed(t testing.TB, c *client.Client) client.CloseError {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not close the session")
	}
	var ce client.CloseError
	if !errors.As(c.Err(), &ce) {
		t.Fatalf("session ended with %v, want a close frame", c.Err())
	}
	return ce
}

// WaitClosedWith waits for the server to close c with code.
func WaitClosedWith(t testing.TB, c *client.Client, code ws.StatusCode) {
	t.Helper()
	if ce := WaitClosed(t, c); ce.Code != code {
		t.Errorf("session closed with %d %q, want %d", ce.Code, ce.Reason, code)
	}
}
