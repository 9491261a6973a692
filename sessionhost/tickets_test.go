package sessionhost

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestTicketStore(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newTicketStore(func() time.Time { return now })
	g := &Grant{Cluster: "kafka"}
	a, _, _ := s.issue(g, 10*time.Second, 2)
	b, _, _ := s.issue(g, 10*time.Second, 2)
	if _, _, err := s.issue(g, 10*time.Second, 2); !errors.Is(err, ErrTicketsFull) {
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
	c, _, _ := s.issue(g, time.Second, 2)
	s.issue(g, time.Second, 2)
	now = now.Add(time.Second)
	if _, _, err := s.issue(g, time.Second, 2); err != nil {
		t.Errorf("issue after expiry: %v", err)
	}
	if _, err := s.redeem(c); !errors.Is(err, ErrTicketUnknown) {
		t.Errorf("purged ticket: %v", err)
	}
}

// A revoked ticket frees its place at once and can no longer be redeemed;
// revoking a redeemed or unknown ticket changes nothing.
func TestRevokedTicketFreesItsPlace(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newTicketStore(func() time.Time { return now })
	g := &Grant{Cluster: "kafka"}
	a, _, _ := s.issue(g, time.Minute, 2)
	b, n, _ := s.issue(g, time.Minute, 2)
	if n != 2 {
		t.Fatalf("outstanding after two issues = %d", n)
	}
	if !s.revoke(a) {
		t.Fatal("revoke of an outstanding ticket reported false")
	}
	if s.revoke(a) || s.revoke("") || s.revoke("00000000000000000000000000000000") {
		t.Error("a second revoke, or one of an unknown ticket, reported true")
	}
	if _, err := s.redeem(a); !errors.Is(err, ErrTicketUnknown) {
		t.Errorf("redeem after revoke: %v, want ErrTicketUnknown", err)
	}
	if _, n, err := s.issue(g, time.Minute, 2); err != nil || n != 2 {
		t.Fatalf("issue after a revoke: %d outstanding, %v", n, err)
	}
	if _, err := s.redeem(b); err != nil {
		t.Fatal(err)
	}
	if s.revoke(b) {
		t.Error("revoke of a redeemed ticket reported true")
	}
	if _, err := s.redeem(b); !errors.Is(err, ErrTicketReused) {
		t.Errorf("replay after a revoke attempt: %v, want ErrTicketReused", err)
	}
	if len(s.queues) != 1 || s.queues[time.Minute].entries.Len() != 2 {
		t.Errorf("expiry queue holds %d entries, want the outstanding ticket and the spent record", s.queues[time.Minute].entries.Len())
	}
}

// Tickets issued with different TTLs (a configuration change of
// tickets.ttl) each expire on time, and expiry leaves no queue behind.
func TestTicketsExpireInTheirOwnTTLOrder(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newTicketStore(func() time.Time { return now })
	g := &Grant{Cluster: "kafka"}
	long, _, _ := s.issue(g, 30*time.Second, 10)
	short, _, _ := s.issue(g, 5*time.Second, 10)
	now = now.Add(5 * time.Second)
	if _, n, _ := s.issue(g, time.Second, 10); n != 2 {
		t.Fatalf("after 5s: %d outstanding, want the 30s ticket and the new one", n)
	}
	if _, err := s.redeem(short); !errors.Is(err, ErrTicketUnknown) {
		t.Errorf("5s ticket after 5s: %v", err)
	}
	if _, err := s.redeem(long); err != nil {
		t.Errorf("30s ticket after 5s: %v", err)
	}
	now = now.Add(30 * time.Second)
	s.issue(g, time.Second, 10)
	now = now.Add(time.Second)
	if _, err := s.redeem("00000000000000000000000000000000"); !errors.Is(err, ErrTicketUnknown) {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.expireLocked(now)
	left, queues, spent := len(s.outstanding), len(s.queues), len(s.spent)
	s.mu.Unlock()
	if left != 0 || queues != 0 || spent != 0 {
		t.Errorf("after every TTL: %d outstanding, %d spent, %d queues; want none", left, spent, queues)
	}
}

// Spent records are bounded like outstanding tickets, however fast
// tickets are issued and redeemed.
func TestSpentRecordsAreBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newTicketStore(func() time.Time { return now })
	for range 50 {
		v, _, err := s.issue(&Grant{}, time.Minute, 4)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.redeem(v); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.spent) != 4 || s.queues[time.Minute].entries.Len() != 4 {
		t.Errorf("%d spent records, %d queued; want the bound 4", len(s.spent), s.queues[time.Minute].entries.Len())
	}
}

// BenchmarkIssueRefusedWhenFull: an issue refused because the store is
// full of unexpired tickets costs the same whatever the store's size (the
// old store scanned every ticket under its mutex on each refusal).
func BenchmarkIssueRefusedWhenFull(b *testing.B) {
	for _, size := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("outstanding=%d", size), func(b *testing.B) {
			now := time.Unix(1000, 0)
			s := newTicketStore(func() time.Time { return now })
			for range size {
				if _, _, err := s.issue(&Grant{}, time.Hour, size); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			for range b.N {
				if _, _, err := s.issue(&Grant{}, time.Hour, size); !errors.Is(err, ErrTicketsFull) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIssueRevoke is the cost of a stream whose upgrade never reaches
// the session server: one issue in DecodeHeaders, one revoke in OnDestroy.
func BenchmarkIssueRevoke(b *testing.B) {
	s := newTicketStore(time.Now)
	for range b.N {
		v, _, err := s.issue(&Grant{}, 30*time.Second, 100000)
		if err != nil {
			b.Fatal(err)
		}
		s.revoke(v)
	}
}
