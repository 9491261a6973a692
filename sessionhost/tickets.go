package sessionhost

import (
	"container/list"
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
	// Issuer is the filter-level configuration whose stream issued the
	// ticket, as given to Acquire: its session ends with 1001 when Envoy
	// is about to close the connections of that configuration's listener
	// (session.drain_time). Nil: the session is not tied to one.
	Issuer *config.Document
}

// ticketEntry is an outstanding ticket (grant set) or the record of a
// redeemed one (grant nil), kept until it expires.
type ticketEntry struct {
	value   string
	grant   *Grant
	expires time.Time
	queue   *expiryQueue
	elem    *list.Element
}

// expiryQueue holds the entries issued with one TTL, oldest first: with a
// constant TTL, issue order is expiry order, so the head is always the
// next to expire and appending keeps the queue sorted.
type expiryQueue struct {
	ttl     time.Duration
	entries list.List
}

// ticketStore holds the outstanding tickets of one session server. A ticket
// is a 128-bit crypto-random value, found by map lookup, redeemable once
// before it expires. Redeemed values are remembered until their expiry so
// that a replay is told apart from a forgery in logs and stats.
//
// Every operation is O(1) apart from dropping expired entries, which costs
// O(1) per entry dropped: entries sit in one expiry queue per TTL (one in
// practice; a configuration change of tickets.ttl adds a second), so expiry
// pops queue heads instead of scanning the store. The mutex is held only for
// map and list updates, never for I/O or randomness.
type ticketStore struct {
	now func() time.Time

	mu          sync.Mutex
	limit       int // bound of outstanding tickets and of spent records
	outstanding map[string]*ticketEntry
	spent       map[string]*ticketEntry
	queues      map[time.Duration]*expiryQueue
}

func newTicketStore(now func() time.Time) *ticketStore {
	return &ticketStore{
		now:         now,
		outstanding: make(map[string]*ticketEntry),
		spent:       make(map[string]*ticketEntry),
		queues:      make(map[time.Duration]*expiryQueue),
	}
}

// issue stores g under a new ticket valid for ttl and returns the ticket
// and the number of tickets outstanding after it. At most limit tickets are
// outstanding: expired ones are dropped first, and ErrTicketsFull is
// returned while limit unexpired ones remain.
func (s *ticketStore) issue(g *Grant, ttl time.Duration, limit int) (string, int, error) {
	var b [ticketBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", 0, err
	}
	value := hex.EncodeToString(b[:])
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = limit
	s.expireLocked(now)
	if len(s.outstanding) >= limit {
		return "", len(s.outstanding), ErrTicketsFull
	}
	e := &ticketEntry{value: value, grant: g, expires: now.Add(ttl)}
	s.enqueueLocked(e, ttl)
	s.outstanding[value] = e
	return value, len(s.outstanding), nil
}

// redeem returns the grant of value and invalidates the ticket. The value
// is remembered as spent until it would have expired, so that a replay is
// told apart from a forgery; spent records are bounded like the outstanding
// tickets, and a redeem that finds them full records nothing (a replay then
// counts as unknown).
func (s *ticketStore) redeem(value string) (*Grant, error) {
	if value == "" {
		return nil, ErrTicketMissing
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.outstanding[value]
	if !ok {
		if e, spent := s.spent[value]; spent && now.Before(e.expires) {
			return nil, ErrTicketReused
		}
		return nil, ErrTicketUnknown
	}
	delete(s.outstanding, value)
	if !now.Before(e.expires) {
		s.dequeueLocked(e)
		return nil, ErrTicketExpired
	}
	s.expireLocked(now)
	g := e.grant
	e.grant = nil
	if len(s.spent) >= s.limit {
		s.dequeueLocked(e)
		return g, nil
	}
	s.spent[value] = e // keeps its place in the expiry queue
	return g, nil
}

// revoke withdraws value if it is still outstanding and reports whether it
// was. A redeemed, expired or unknown value is left alone.
func (s *ticketStore) revoke(value string) bool {
	if value == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.outstanding[value]
	if !ok {
		return false
	}
	delete(s.outstanding, value)
	s.dequeueLocked(e)
	return true
}

// pending returns the number of outstanding tickets; expired ones are
// dropped by the next issue or redeem.
func (s *ticketStore) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.outstanding)
}

func (s *ticketStore) enqueueLocked(e *ticketEntry, ttl time.Duration) {
	q := s.queues[ttl]
	if q == nil {
		q = &expiryQueue{ttl: ttl}
		s.queues[ttl] = q
	}
	e.queue = q
	e.elem = q.entries.PushBack(e)
}

func (s *ticketStore) dequeueLocked(e *ticketEntry) {
	e.queue.entries.Remove(e.elem)
	if e.queue.entries.Len() == 0 {
		delete(s.queues, e.queue.ttl)
	}
}

// expireLocked drops every entry whose expiry has passed, from the queue
// heads: the cost is one step per entry dropped plus one per queue.
func (s *ticketStore) expireLocked(now time.Time) {
	for ttl, q := range s.queues {
		for {
			front := q.entries.Front()
			if front == nil {
				delete(s.queues, ttl)
				break
			}
			e := front.Value.(*ticketEntry)
			if now.Before(e.expires) {
				break
			}
			q.entries.Remove(front)
			if e.grant != nil {
				delete(s.outstanding, e.value)
			} else {
				delete(s.spent, e.value)
			}
		}
	}
}
