package sessionhost

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
)

// TicketHeader carries the one-time ticket from the Envoy filter to the
// session server. The filter removes any value a client sent.
const TicketHeader = "x-pubsub-ticket"

// ticketBytes is the size of a ticket's random value: 128 bits.
const ticketBytes = 16

// Why a ticket was refused, or not issued.
var (
	ErrTicketMissing = errors.New("no ticket")
	ErrTicketUnknown = errors.New("unknown ticket")
	ErrTicketReused  = errors.New("ticket already used")
	ErrTicketExpired = errors.New("ticket expired")
	ErrTicketsFull   = errors.New("too many outstanding tickets")
)

// Grant is what a redeemed ticket lets a session do: one Kafka cluster with
// its credentials resolved, narrowed by the route-level documents.
type Grant struct {
	// Cluster is the Envoy cluster name, for logs.
	Cluster string
	// Kafka is a snapshot of the cluster's configuration with the SASL
	// password resolved.
	Kafka *config.KafkaCluster
	// Routes are the route-level documents (virtual host, route, weighted
	// cluster) whose allow-lists narrow the cluster's.
	Routes []*config.Route
	// Claims are the verified identity of the upgrade (jwt_authn's
	// payload): empty for an anonymous session, nil where the listener has
	// no identity section (the session then knows nothing of identities).
	Claims identity.Claims
	// Verifier checks the tokens of the session's cmd_auth; nil refuses
	// them as not supported.
	Verifier *identity.Verifier
}

type ticket struct {
	grant   *Grant
	expires time.Time
}

// ticketStore holds the outstanding tickets of one session server. A ticket
// is a 128-bit crypto-random value, found by map lookup, redeemable once
// before it expires. Redeemed values are remembered until their expiry so
// that a replay is told apart from a forgery in logs and stats.
type ticketStore struct {
	now func() time.Time

	mu          sync.Mutex
	limit       int // bound of outstanding tickets and of spent records
	outstanding map[string]ticket
	spent       map[string]time.Time // redeemed value -> its expiry
}

func newTicketStore(now func() time.Time) *ticketStore {
	return &ticketStore{now: now, outstanding: make(map[string]ticket), spent: make(map[string]time.Time)}
}

// issue stores g under a new ticket valid for ttl and returns the ticket.
// At most limit tickets are outstanding: when full, expired ones are purged
// first and ErrTicketsFull is returned if none was.
func (s *ticketStore) issue(g *Grant, ttl time.Duration, limit int) (string, error) {
	var b [ticketBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	value := hex.EncodeToString(b[:])
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = limit
	if len(s.outstanding) >= limit {
		s.purgeLocked(now)
		if len(s.outstanding) >= limit {
			return "", ErrTicketsFull
		}
	}
	s.outstanding[value] = ticket{grant: g, expires: now.Add(ttl)}
	return value, nil
}

// redeem returns the grant of value and invalidates the ticket.
func (s *ticketStore) redeem(value string) (*Grant, error) {
	if value == "" {
		return nil, ErrTicketMissing
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.outstanding[value]
	if !ok {
		if exp, spent := s.spent[value]; spent && now.Before(exp) {
			return nil, ErrTicketReused
		}
		return nil, ErrTicketUnknown
	}
	delete(s.outstanding, value)
	if !now.Before(t.expires) {
		return nil, ErrTicketExpired
	}
	s.rememberSpentLocked(value, t.expires, now)
	return t.grant, nil
}

// rememberSpentLocked records a redeemed value; the record is bounded like
// the outstanding tickets and dropped (replays then count as unknown) when
// full of unexpired records.
func (s *ticketStore) rememberSpentLocked(value string, expires, now time.Time) {
	if len(s.spent) >= s.limit {
		s.purgeLocked(now)
		if len(s.spent) >= s.limit {
			return
		}
	}
	s.spent[value] = expires
}

// purgeLocked drops expired tickets and spent records.
func (s *ticketStore) purgeLocked(now time.Time) {
	for v, t := range s.outstanding {
		if !now.Before(t.expires) {
			delete(s.outstanding, v)
		}
	}
	for v, exp := range s.spent {
		if !now.Before(exp) {
			delete(s.spent, v)
		}
	}
}

// pending returns the number of outstanding tickets, expired ones included
// until they are purged.
func (s *ticketStore) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.outstanding)
}
