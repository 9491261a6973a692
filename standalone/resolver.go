// Package standalone runs the session engine without Envoy: an HTTP server
// that serves cluster NAME of the configuration at ws://HOST:PORT/NAME, and
// an embedded in-memory Kafka for development.
package standalone

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/kafka"
	"github.com/envoy-pubsub/gateway/pubsub"
	"github.com/envoy-pubsub/gateway/server"
)

// Resolver maps the request path /NAME to Kafka cluster NAME.
type Resolver struct {
	pool     *kafka.Pool
	clusters map[string]*config.KafkaCluster
	session  config.Session
}

// NewResolver resolves every cluster's SASL password (from the inline value,
// password_file or password_env) once, so that a missing secret fails at
// start rather than per session.
func NewResolver(doc *config.Document, pool *kafka.Pool) (*Resolver, error) {
	r := &Resolver{pool: pool, clusters: make(map[string]*config.KafkaCluster, len(doc.KafkaClusters)), session: doc.Session}
	for _, name := range doc.ClusterNames() {
		c, err := doc.KafkaClusters[name].WithPassword(nil)
		if err != nil {
			return nil, fmt.Errorf("kafka_clusters.%s.%w", name, err)
		}
		r.clusters[name] = c
	}
	return r, nil
}

func (r *Resolver) cluster(req *http.Request) (string, *config.KafkaCluster, error) {
	name := strings.Trim(req.URL.Path, "/")
	c := r.clusters[name]
	if c == nil {
		return "", nil, &server.Error{Status: http.StatusNotFound, Message: fmt.Sprintf("no pub-sub endpoint at %s", req.URL.Path)}
	}
	return name, c, nil
}

// CheckEndpoint answers 404 for paths that name no cluster.
func (r *Resolver) CheckEndpoint(req *http.Request) error {
	_, _, err := r.cluster(req)
	return err
}

// Resolve binds a session to the shared client of the path's cluster.
func (r *Resolver) Resolve(req *http.Request) (server.Route, error) {
	name, c, err := r.cluster(req)
	if err != nil {
		return server.Route{}, err
	}
	k, err := r.pool.Acquire(c)
	if err != nil {
		slog.Error("standalone: kafka client", "cluster", name, "err", err)
		return server.Route{}, &server.Error{Status: http.StatusBadGateway, Message: "kafka cluster unavailable"}
	}
	mux := pubsub.NewMux()
	kafka.Register(mux, k, kafka.NewPolicy(c).WithLimits(r.session))
	return server.Route{Handler: mux, Release: k.Release, Attrs: []slog.Attr{slog.String("cluster", name)}}, nil
}
