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

// PushesUntil reads sub's pushes until their next_offset reaches end and
// returns the offsets of the records pushed from from on, which must come
// in order, each once, and never past the next_offset of their push. It
// fails the test if the pushes stop for 30 seconds before end or the
// subscription ends.
func PushesUntil(t testing.TB, sub *client.Subscription, from, end int64) []int64 {
	t.Helper()
	var got []int64
	timeout := time.After(30 * time.Second)
	for next := from; next < end; {
		select {
		case resp, ok := <-sub.C():
			if !ok {
				t.Fatalf("the subscription ended at %d, before %d", next, end)
			}
			fr := resp.GetKafkaFetchResp()
			if fr == nil {
				t.Fatalf("push %v, want records", resp)
			}
			for _, m := range fr.GetMessages() {
				if m.GetOffset() < next {
					t.Fatalf("offset %d pushed after next_offset %d: a duplicate", m.GetOffset(), next)
				}
				got = append(got, m.GetOffset())
				next = m.GetOffset() + 1
			}
			if fr.GetNextOffset() < next {
				t.Fatalf("next_offset %d before the records pushed (%d)", fr.GetNextOffset(), next)
			}
			next = fr.GetNextOffset()
		case <-timeout:
			t.Fatalf("pushes stopped at %d, want %d (records so far %v)", next, end, got)
		}
	}
	return got
}
