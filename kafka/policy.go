package kafka

import (
	"path"

	"github.com/envoy-pubsub/gateway/config"
)

// Policy is what one session may name in its commands: every allow-list that
// applies to it (the cluster's, then those of the virtual host, route and
// weighted cluster the upgrade was routed through). A topic must pass each
// list of its kind. Lists hold exact names and path.Match globs. The
// handlers check the policy before they contact Kafka.
type Policy struct {
	// read are the lists of topics that may be read: fetch, list offset
	// and subscribe.
	read [][]string
}

// NewPolicy returns the policy of a session on cluster, narrowed by the
// route-level documents that apply (outermost first). A list that is absent
// does not narrow; an empty list allows nothing.
func NewPolicy(cluster *config.KafkaCluster, routes ...*config.Route) Policy {
	var p Policy
	if cluster.Topics != nil {
		p.read = append(p.read, cluster.Topics)
	}
	for _, r := range routes {
		if r != nil && r.Topics != nil {
			p.read = append(p.read, r.Topics)
		}
	}
	return p
}

// checkRead returns ErrTopicNotAllowed unless topic may be read.
func (p Policy) checkRead(topic string) error {
	return checkLists(p.read, topic, ErrTopicNotAllowed)
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
