// Package standalone runs the session engine without Envoy: a Server that
// serves cluster NAME of the configuration at ws://HOST:PORT/NAME, and an
// embedded in-memory Kafka for development. The pubsub-server command, the
// integration tests and the benchmark all wire a server through it.
package standalone

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/server"
)

// resolver maps the request path /NAME to Kafka cluster NAME.
type resolver struct {
	pool     *kafka.Pool
	log      *slog.Logger
	clusters map[string]*config.KafkaCluster
	order    []string // the cluster names, sorted
	session  config.Session
}

// newResolver resolves every cluster's SASL password (from the inline value,
// password_file or password_env) once, so that a missing secret fails at
// start rather than per session.
func newResolver(doc *config.Document, pool *kafka.Pool, log *slog.Logger) (*resolver, error) {
	r := &resolver{pool: pool, log: log, clusters: make(map[string]*config.KafkaCluster, len(doc.KafkaClusters)), session: doc.Session}
	for _, name := range doc.ClusterNames() {
		c, err := doc.KafkaClusters[name].WithPassword(nil)
		if err != nil {
			return nil, fmt.Errorf("kafka_clusters.%s.%w", name, err)
		}
		r.clusters[name] = c
		r.order = append(r.order, name)
	}
	return r, nil
}

// names returns the names of the clusters served, sorted.
func (r *resolver) names() []string { return r.order }

func (r *resolver) cluster(req *http.Request) (string, *config.KafkaCluster, error) {
	name := strings.Trim(req.URL.Path, "/")
	c := r.clusters[name]
	if c == nil {
		return "", nil, &server.Error{Status: http.StatusNotFound, Message: fmt.Sprintf("no pub-sub endpoint at %s", req.URL.Path), Reason: "unknown_endpoint"}
	}
	return name, c, nil
}

// CheckEndpoint answers 404 for paths that name no cluster.
func (r *resolver) CheckEndpoint(req *http.Request) error {
	_, _, err := r.cluster(req)
	return err
}

// Resolve binds a session to the shared client of the path's cluster.
func (r *resolver) Resolve(req *http.Request) (server.Route, error) {
	name, c, err := r.cluster(req)
	if err != nil {
		return server.Route{}, err
	}
	return server.KafkaRoute(r.pool, name, c, kafka.NewPolicy(c).WithLimits(r.session), r.log)
}
