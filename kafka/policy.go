package kafka

import (
	"path"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
)

// Policy is what one session may do: every allow-list that applies to it
// (the cluster's, then those of the virtual host, route and weighted cluster
// the upgrade was routed through) and its produce limits. A name must pass
// each list of its kind. Lists hold exact names and path.Match globs. The
// handlers check the policy before they contact Kafka.
type Policy struct {
	// read are the lists of topics that may be read: fetch, list offset,
	// subscribe, commit and committed.
	read [][]string
	// produce are the lists of topics that may be written.
	produce [][]string
	// groups are the lists of consumer group ids that may be used.
	groups [][]string
	// maxProduceRecords bounds the records of one produce request.
	maxProduceRecords int
	// produceBytesPerSecond bounds the record bytes the session produces
	// per second; 0 means no bound.
	produceBytesPerSecond int
	// scope returns the records of a topic the session may see; nil means
	// every record of every topic.
	scope func(topic string) Scope
	// access are the identity-scoped rules that apply, with the session's
	// claims; nil where no access section applies.
	access *access
}

// NewPolicy returns the policy of a session on cluster, narrowed by the
// route-level documents that apply (outermost first), with the default
// produce limits. A route list that is absent does not narrow; an empty list
// allows nothing. Reading is open where the cluster has no topics list;
// producing and groups are refused where the cluster has no produce_topics
// or groups list.
func NewPolicy(cluster *config.KafkaCluster, routes ...*config.Route) Policy {
	p := Policy{
		produce:           [][]string{nonNil(cluster.ProduceTopics)},
		groups:            [][]string{nonNil(cluster.Groups)},
		maxProduceRecords: config.DefaultMaxProduceRecords,
	}
	if cluster.Topics != nil {
		p.read = append(p.read, cluster.Topics)
	}
	var levels [][]accessRule
	if cluster.Access != nil {
		levels = append(levels, compileAccess(cluster.Access))
	}
	for _, r := range routes {
		if r == nil {
			continue
		}
		if r.Access != nil {
			levels = append(levels, compileAccess(r.Access))
		}
		for _, l := range []struct {
			lists *[][]string
			list  []string
		}{{&p.read, r.Topics}, {&p.produce, r.ProduceTopics}, {&p.groups, r.Groups}} {
			if l.list != nil {
				*l.lists = append(*l.lists, l.list)
			}
		}
	}
	if levels != nil {
		p = p.withAccess(&access{levels: levels})
	}
	return p
}

// WithClaims returns p for a session opened with claims (nil: anonymous):
// the access rules that apply read them, and the session's read scope
// follows from them.
func (p Policy) WithClaims(claims identity.Claims) Policy {
	if !p.access.set() {
		return p
	}
	a := *p.access
	a.claims = claims
	return p.withAccess(&a)
}

// withAccess returns p checking a and seeing the records a's read rules
// let it see.
func (p Policy) withAccess(a *access) Policy {
	p.access = a
	return p.WithReadScope(a.readScope)
}

// WithLimits returns p with the produce limits of the session document s
// (session.max_produce_records, session.produce_bytes_per_second).
func (p Policy) WithLimits(s config.Session) Policy {
	if s.MaxProduceRecords > 0 {
		p.maxProduceRecords = s.MaxProduceRecords
	}
	p.produceBytesPerSecond = max(s.ProduceBytesPerSecond, 0)
	return p
}

// WithReadScope returns p with scope deciding which records of a topic the
// session sees (identity-scoped access); scope returns nil for every record.
func (p Policy) WithReadScope(scope func(topic string) Scope) Policy {
	p.scope = scope
	return p
}

// ReadScope returns the records of topic the session may see: nil for every
// record.
func (p Policy) ReadScope(topic string) Scope {
	if p.scope == nil {
		return nil
	}
	return p.scope(topic)
}

// nonNil returns list, or an empty list (which allows nothing) for nil.
func nonNil(list []string) []string {
	if list == nil {
		return []string{}
	}
	return list
}

// checkRead returns ErrTopicNotAllowed unless topic may be read.
func (p Policy) checkRead(topic string) error {
	if err := checkLists(p.read, topic, ErrTopicNotAllowed); err != nil {
		return err
	}
	if p.access.set() && !p.access.allows(readPatterns, topic) {
		return ErrTopicNotAllowed
	}
	return nil
}

// produceStamps returns ErrTopicNotAllowed unless topic may be written, and
// else what the access rules set on every record written to it.
func (p Policy) produceStamps(topic string) ([]RecordMatch, error) {
	if err := checkLists(p.produce, topic, ErrTopicNotAllowed); err != nil {
		return nil, err
	}
	if !p.access.set() {
		return nil, nil
	}
	stamps, ok := p.access.allowsProduce(topic)
	if !ok {
		return nil, ErrTopicNotAllowed
	}
	return stamps, nil
}

// checkGroup returns ErrGroupNotAllowed unless group may be used (an empty
// group id never may).
func (p Policy) checkGroup(group string) error {
	if group == "" {
		return ErrGroupNotAllowed
	}
	if err := checkLists(p.groups, group, ErrGroupNotAllowed); err != nil {
		return err
	}
	if p.access.set() && !p.access.allows(groupPatterns, group) {
		return ErrGroupNotAllowed
	}
	return nil
}

// checkLists returns denied unless name passes every list.
func checkLists(lists [][]string, name string, denied error) error {
	for _, list := range lists {
		if !matchesAny(list, name) {
			return denied
		}
	}
	return nil
}

// matchesAny reports whether name is one of patterns or matches one of
// its globs.
func matchesAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
