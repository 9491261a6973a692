package testkit

import (
	"testing"
	"time"
)

// WaitUntil polls cond every 20 ms until it holds, failing the test with
// what after 15 seconds.
func WaitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
