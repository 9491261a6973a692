// Package filter is the Envoy glue of the gateway: the Go HTTP filter that
// hands WebSocket upgrades routed to kafka-scheme clusters to the in-process
// session host (package sessionhost), with a one-time ticket carrying the
// cluster's configuration snapshot and credentials. It maps Envoy's
// callbacks to the gateway: Parse and Merge of the plugin_config and
// per-route configs, the DecodeHeaders decision, the secrets Envoy holds,
// and Envoy's stats and logs. It depends on the SDK's api package only; the
// .so's package main registers it.
package filter

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
	"github.com/envoy-pubsub/gateway/server"
	"github.com/envoy-pubsub/gateway/sessionhost"
)

// PluginName is the plugin_name the filter is registered under.
const PluginName = "pubsub"

// processHosts are the session hosts of this Envoy process, logging to
// Envoy's log.
var processHosts = sync.OnceValue(func() *sessionhost.Hosts { return sessionhost.NewHosts(envoyLogger()) })

// filterConfig is a parsed filter-level plugin_config. Its session host
// hold is released when Envoy destroys it.
type filterConfig struct {
	doc         *config.Document
	metrics     *metrics
	host        *sessionhost.Host
	credentials *credentials
	// verifier checks the tokens of cmd_auth (identity.jwt); nil without.
	verifier    *identity.Verifier
	destroyOnce sync.Once
}

// Destroy releases the config's hold on the session host; the last config
// of a listener makes it drain, in the background: Destroy runs on Envoy's
// main thread and returns at once.
func (c *filterConfig) Destroy() {
	c.destroyOnce.Do(func() {
		c.credentials.close()
		processHosts().Release(c.host, c.metrics)
		if c.verifier != nil {
			c.verifier.Close()
		}
	})
}

// routeConfig is a parsed per-route plugin config. invalid is set, instead
// of failing the parse, when the route document is bad: Envoy may parse
// route configs at request time and aborts on an error there. Kafka upgrades
// on such a route are refused.
type routeConfig struct {
	route   *config.Route
	invalid error
}

// requestConfig is the filter-level config merged with the route-level
// configs of a request's virtual host, route and weighted cluster.
type requestConfig struct {
	filter  *filterConfig
	routes  []*config.Route
	invalid error
}

// Parser parses and merges the plugin's configs.
type Parser struct{}

// Parse parses a filter-level plugin_config (callbacks set), starting or
// updating the session server and defining the stats; errors reject the
// config. A per-route config (callbacks nil) never fails: see routeConfig.
func (p *Parser) Parse(any *anypb.Any, callbacks api.ConfigCallbackHandler) (parsed interface{}, err error) {
	if callbacks == nil {
		return parseRoute(any), nil
	}
	defer func() {
		if r := recover(); r != nil {
			parsed, err = nil, fmt.Errorf("pubsub: parsing plugin_config panicked: %v", r)
		}
	}()
	doc, err := ParseFilterConfig(any)
	if err != nil {
		return nil, err
	}
	var verifier *identity.Verifier
	if doc.Identity != nil && doc.Identity.JWT != nil {
		if verifier, err = identity.NewVerifier(doc.Identity.JWT, envoyLogger()); err != nil {
			return nil, err
		}
	}
	m := defineMetrics(callbacks)
	host, err := processHosts().Acquire(doc, m)
	if err != nil {
		if verifier != nil {
			verifier.Close()
		}
		return nil, fmt.Errorf("pubsub: session server: %w", err)
	}
	return &filterConfig{doc: doc, metrics: m, host: host, credentials: newCredentials(doc, passwordFilePoll), verifier: verifier}, nil
}

func parseRoute(any *anypb.Any) (rc *routeConfig) {
	defer func() {
		if r := recover(); r != nil {
			rc = &routeConfig{invalid: fmt.Errorf("parsing panicked: %v", r)}
			api.LogErrorf("pubsub: per-route plugin_config rejected, kafka upgrades on its routes are refused: %v", rc.invalid)
		}
	}()
	r, err := ParseRouteConfig(any)
	if err != nil {
		api.LogErrorf("pubsub: per-route plugin_config rejected, kafka upgrades on its routes are refused: %v", err)
		return &routeConfig{invalid: err}
	}
	return &routeConfig{route: r}
}

// Merge narrows parent (the filter-level config or an earlier merge) by the
// route-level child: each route's allow-lists must also pass, and a bad route
// config makes the merge refuse kafka upgrades. It never fails.
func (p *Parser) Merge(parent interface{}, child interface{}) interface{} {
	merged := &requestConfig{}
	switch pc := parent.(type) {
	case *filterConfig:
		merged.filter = pc
	case *requestConfig:
		merged.filter, merged.invalid = pc.filter, pc.invalid
		merged.routes = slices.Clone(pc.routes)
	default:
		api.LogErrorf("pubsub: merge: unexpected parent config %T", parent)
		merged.invalid = fmt.Errorf("unexpected parent config %T", parent)
	}
	switch cc := child.(type) {
	case *routeConfig:
		if cc.invalid != nil {
			merged.invalid = cc.invalid
		} else if cc.route != nil {
			merged.routes = append(merged.routes, cc.route)
		}
	default:
		api.LogErrorf("pubsub: merge: unexpected route config %T", child)
		merged.invalid = fmt.Errorf("unexpected route config %T", child)
	}
	return merged
}

// Factory builds the per-request filter for a parsed or merged config.
func Factory(cfg interface{}, callbacks api.FilterCallbackHandler) api.StreamFilter {
	switch c := cfg.(type) {
	case *filterConfig:
		return &filter{callbacks: callbacks, cfg: c}
	case *requestConfig:
		if c.filter != nil {
			return &filter{callbacks: callbacks, cfg: c.filter, routes: c.routes, routeInvalid: c.invalid}
		}
	}
	api.LogErrorf("pubsub: no filter-level config (%T): passing the request through", cfg)
	return &api.PassThroughStreamFilter{}
}

// filter decides, per request, whether an upgrade is handed to the session
// server.
type filter struct {
	api.PassThroughStreamFilter
	callbacks    api.FilterCallbackHandler
	cfg          *filterConfig
	routes       []*config.Route
	routeInvalid error
	ticket       string // issued for this stream; revoked by OnDestroy unless redeemed
}

// Local reply bodies.
const (
	bodyUpgradeRequired = "426 Upgrade Required: this route reads Kafka over the pub-sub protocol; send a WebSocket upgrade (Upgrade: websocket)\n"
	bodyRouteInvalid    = "pub-sub route configuration is invalid; see the Envoy log\n"
	bodyNoCredentials   = "Kafka credentials for this route are unavailable\n"
	bodyTooManyTickets  = "too many pending pub-sub upgrades; retry later\n"
	bodyHostMoved       = "pub-sub sessions are served by a newer Envoy process now; retry\n"
	bodyHostStarting    = "the pub-sub session server of this Envoy process is starting; retry\n"
	bodyHostUnavailable = "the pub-sub session server is unavailable; retry later\n"
)

// DecodeHeaders hands a WebSocket upgrade routed to a kafka-scheme cluster
// to the session server with a fresh ticket, answers 426 to other requests
// routed there, and leaves every other request untouched.
func (f *filter) DecodeHeaders(headers api.RequestHeaderMap, endStream bool) api.StatusType {
	cluster, ok := f.callbacks.StreamInfo().UpstreamClusterName()
	if !ok {
		return api.Continue
	}
	kc, ok := f.cfg.doc.KafkaClusters[cluster]
	if !ok {
		return api.Continue
	}
	upgrade, clientTicket := inspect(headers)
	if !upgrade {
		f.cfg.metrics.increment(f.cfg.metrics.upgradeRequired)
		// No Upgrade header: Envoy removes it from the response to a request
		// that is not an upgrade (ConnectionManagerUtility::
		// mutateResponseHeaders, conn_manager_utility.cc:711-716 in v1.39.1).
		return f.reply(http.StatusUpgradeRequired, bodyUpgradeRequired, "pubsub_upgrade_required", nil)
	}
	if clientTicket {
		headers.Del(sessionhost.TicketHeader)
	}
	if f.routeInvalid != nil {
		api.LogErrorf("pubsub: refusing upgrade to cluster %s: route config is invalid: %v", cluster, f.routeInvalid)
		return f.reply(http.StatusInternalServerError, bodyRouteInvalid, "pubsub_route_config_invalid", nil)
	}
	claims := f.claims()
	if len(claims) == 0 && f.identityRequired() {
		return f.reply(http.StatusUnauthorized, bodyIdentityRequired, "pubsub_identity_required", nil)
	}
	snapshot, err := f.cfg.credentials.snapshot(cluster, kc, f.secret)
	if err != nil {
		api.LogErrorf("pubsub: refusing upgrade to cluster %s: kafka_clusters.%s.%v", cluster, cluster, err)
		return f.reply(http.StatusServiceUnavailable, bodyNoCredentials, "pubsub_credentials_unavailable", nil)
	}
	tickets := f.cfg.doc.Tickets
	ticket, err := f.cfg.host.Issue(&sessionhost.Grant{Cluster: cluster, Kafka: snapshot, Routes: f.routes,
		Claims: claims, Verifier: f.cfg.verifier, Issuer: f.cfg.doc},
		tickets.TTL.Duration(), tickets.MaxOutstanding)
	switch {
	case errors.Is(err, sessionhost.ErrTicketsFull):
		api.LogWarnf("pubsub: refusing upgrade to cluster %s: %v", cluster, err)
		return f.reply(http.StatusServiceUnavailable, bodyTooManyTickets, "pubsub_tickets_exhausted", nil)
	case errors.Is(err, sessionhost.ErrStarting):
		api.LogInfof("pubsub: refusing upgrade to cluster %s: %v", cluster, err)
		return f.reply(http.StatusServiceUnavailable, bodyHostStarting, "pubsub_session_server_starting", nil)
	case errors.Is(err, sessionhost.ErrSuperseded), errors.Is(err, sessionhost.ErrDraining):
		api.LogInfof("pubsub: refusing upgrade to cluster %s: %v", cluster, err)
		return f.reply(http.StatusServiceUnavailable, bodyHostMoved, "pubsub_session_server_moved", nil)
	case err != nil:
		api.LogErrorf("pubsub: refusing upgrade to cluster %s: session server: %v", cluster, err)
		return f.reply(http.StatusServiceUnavailable, bodyHostUnavailable, "pubsub_session_server_unavailable", nil)
	}
	f.cfg.metrics.increment(f.cfg.metrics.ticketsIssued)
	f.ticket = ticket
	headers.Set(sessionhost.TicketHeader, ticket)
	return api.Continue
}

// OnDestroy runs on the worker when the stream ends. A ticket the session
// server has not redeemed by then never will be (the router answered 503,
// the connect failed, or the client reset before the 101): it is revoked,
// in O(1), instead of holding a place in the bounded store for its TTL.
func (f *filter) OnDestroy(api.DestroyReason) {
	if f.ticket == "" {
		return
	}
	if f.cfg.host.Revoke(f.ticket) {
		f.cfg.metrics.increment(f.cfg.metrics.ticketsRevoked)
	}
	f.ticket = ""
}

// secret reads an Envoy generic_secret; request-scoped, so only during
// DecodeHeaders.
func (f *filter) secret(name string) (string, bool) {
	return f.callbacks.SecretManager().GetGenericSecret(name)
}

func (f *filter) reply(status int, body, details string, headers map[string][]string) api.StatusType {
	f.callbacks.DecoderFilterCallbacks().SendLocalReply(status, body, headers, -1, details)
	return api.LocalReply
}

// inspect reports whether the request asks for a WebSocket upgrade (HTTP/1.1
// Upgrade, or HTTP/2 extended CONNECT, which Envoy presents to filters in the
// same form) and whether the client sent a ticket header of its own.
func inspect(headers api.RequestHeaderMap) (upgrade, clientTicket bool) {
	headers.Range(func(key, value string) bool {
		switch {
		case strings.EqualFold(key, sessionhost.TicketHeader):
			clientTicket = true
		case strings.EqualFold(key, "upgrade"):
			upgrade = upgrade || server.NamesWebSocket(value)
		}
		return true
	})
	return upgrade, clientTicket
}
