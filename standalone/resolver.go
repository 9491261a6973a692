// Package standalone runs the session engine without Envoy: a Server that
// serves cluster NAME of the configuration at ws://HOST:PORT/NAME, and an
// embedded in-memory Kafka for development. The pubsub-server command, the
// integration tests and the benchmark all wire a server through it.
package standalone

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
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
	// identity is the document's identity section, nil without one;
	// verifier checks its tokens (nil without identity.jwt).
	identity *config.Identity
	verifier *identity.Verifier
}

// newResolver resolves every cluster's SASL password (from the inline value,
// password_file or password_env) once, so that a missing secret fails at
// start rather than per session, and reads the JWK Set file of identity.jwt.
func newResolver(doc *config.Document, pool *kafka.Pool, log *slog.Logger) (*resolver, error) {
	r := &resolver{pool: pool, log: log, clusters: make(map[string]*config.KafkaCluster, len(doc.KafkaClusters)), session: doc.Session, identity: doc.Identity}
	if id := doc.Identity; id != nil {
		if id.JWT == nil {
			return nil, errors.New("identity.jwt: the standalone server verifies tokens itself and needs identity.jwt (envoy_jwt_metadata applies inside Envoy only)")
		}
		v, err := identity.NewVerifier(id.JWT, log)
		if err != nil {
			return nil, err
		}
		r.verifier = v
	}
	for _, name := range doc.ClusterNames() {
		c, err := doc.KafkaClusters[name].WithPassword(nil)
		if err != nil {
			r.close()
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

// close stops the refreshes of a jwks_uri.
func (r *resolver) close() {
	if r.verifier != nil {
		r.verifier.Close()
	}
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
	claims, err := r.authenticate(req)
	if err != nil {
		return server.Route{}, err
	}
	route, err := server.KafkaRoute(r.pool, name, c, kafka.NewPolicy(c).WithLimits(r.session).WithClaims(claims), r.log)
	if err != nil || r.verifier == nil {
		return route, err
	}
	return route.WithIdentity(identity.NewSession(claims, r.verifier, r.log)), nil
}

// Bodies of the 401 answers.
const (
	bodyTokenRequired = "authentication required: send a token as Authorization: Bearer or the access_token query parameter"
	bodyTokenInvalid  = "authentication failed: "
)

// authenticate verifies the request's token and returns its claims: nil
// for a request without one where identity is not required (the session is
// anonymous). A missing token where it is required, and any token that
// does not verify, refuse the upgrade with 401. Neither the token nor its
// claims are logged.
func (r *resolver) authenticate(req *http.Request) (identity.Claims, error) {
	if r.verifier == nil {
		return nil, nil
	}
	token := identity.TokenFrom(req)
	if token == "" {
		if r.identity.Required {
			r.log.Info("pubsub: upgrade refused: no token", "remote", req.RemoteAddr)
			return nil, &server.Error{Status: http.StatusUnauthorized, Message: bodyTokenRequired}
		}
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(req.Context(), verifyTimeout)
	defer cancel()
	claims, err := r.verifier.Verify(ctx, token)
	var refused *identity.TokenError
	switch {
	case errors.As(err, &refused):
		r.log.Info("pubsub: upgrade refused: token not verified", "reason", refused.Reason, "remote", req.RemoteAddr)
		return nil, &server.Error{Status: http.StatusUnauthorized, Message: bodyTokenInvalid + refused.Reason}
	case err != nil:
		r.log.Warn("pubsub: upgrade refused: tokens cannot be verified", "err", err, "remote", req.RemoteAddr)
		return nil, &server.Error{Status: http.StatusUnauthorized, Message: bodyTokenInvalid + "the token could not be verified"}
	}
	return claims, nil
}

// verifyTimeout bounds the verification of one token, a first fetch of a
// jwks_uri included.
const verifyTimeout = 15 * time.Second
