package testkit

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds and fails the test, saying what was
// awaited, if it does not within 10 seconds.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not the case after 10s", what)
		}
	}
}
