package sessionhost

import (
	"errors"
	"testing"
	"time"
)

func TestTicketStore(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newTicketStore(func() time.Time { return now })
	g := &Grant{Cluster: "kafka"}
	a, _ := s.issue(g, 10*time.Second, 2)
	b, _ := s.issue(g, 10*time.Second, 2)
	if _, err := s.issue(g, 10*time.Second, 2); !errors.Is(err, ErrTicketsFull) {
		t.Fatalf("third issue: %v, want ErrTicketsFull", err)
	}
	if got, err := s.redeem(a); err != nil || got != g {
		t.Fatalf("redeem = %v, %v", got, err)
	}
	if _, err := s.redeem(a); !errors.Is(err, ErrTicketReused) {
		t.Errorf("reuse: %v", err)
	}
	if _, err := s.redeem("00000000000000000000000000000000"); !errors.Is(err, ErrTicketUnknown) {
		t.Errorf("forged: %v", err)
	}
	if _, err := s.redeem(""); !errors.Is(err, ErrTicketMissing) {
		t.Errorf("missing: %v", err)
	}
	now = now.Add(10 * time.Second)
	if _, err := s.redeem(b); !errors.Is(err, ErrTicketExpired) {
		t.Errorf("expired: %v", err)
	}
	// Expired tickets are purged when the store is full.
	c, _ := s.issue(g, time.Second, 2)
	s.issue(g, time.Second, 2)
	now = now.Add(time.Second)
	if _, err := s.issue(g, time.Second, 2); err != nil {
		t.Errorf("issue after expiry: %v", err)
	}
	if _, err := s.redeem(c); !errors.Is(err, ErrTicketUnknown) {
		t.Errorf("purged ticket: %v", err)
	}
}
