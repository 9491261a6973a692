package kafka

import (
	"path"

	"github.com/envoy-pubsub/gateway/config"
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
	for _, r := range routes {
		if r == nil {
			continue
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
	return p
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
	return checkLists(p.read, topic, ErrTopicNotAllowed)
}

// checkProduce returns ErrTopicNotAllowed unless topic may be written.
func (p Policy) checkProduce(topic string) error {
	return checkLists(p.produce, topic, ErrTopicNotAllowed)
}

// checkGroup returns ErrGroupNotAllowed unless group may be used (an empty
// group id never may).
func (p Policy) checkGroup(group string) error {
	if group == "" {
		return ErrGroupNotAllowed
	}
	return checkLists(p.groups, group, ErrGroupNotAllowed)
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
