package envoycheck

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/filter"
)

// LibraryPath is where the Docker image installs the .so.
const LibraryPath = "/etc/envoy/envoy-pubsub.so"

// connectionManager is one HTTP connection manager of the bootstrap and the
// pub-sub plugin configured in it, if any.
type connectionManager struct {
	where      string
	hcm        *hcmv3.HttpConnectionManager
	filterName string           // name of the pub-sub golang filter in http_filters
	plugin     *config.Document // nil without a (valid) pub-sub filter
	// disabledByDefault: the pub-sub filter is marked disabled in
	// http_filters and runs only where a route enables it.
	disabledByDefault bool
	// discoveredFrom names the path_config_source file of each filter
	// whose config_discovery resolveDiscovered replaced by its config.
	discoveredFrom map[*hcmv3.HttpFilter]string
}

// wiring is what the checks look across: the static clusters and secrets,
// and every cluster a plugin treats as kafka-scheme.
type wiring struct {
	libraryPath    string // where golang filters must load the .so from
	readDiscovered func(path string) ([]byte, error)
	clusters       map[string]*clusterv3.Cluster
	staticSecrets  map[string]bool // names of static generic secrets
	kafkaScheme    map[string]bool
	problems       []error
}

func (w *wiring) addf(format string, args ...any) {
	w.problems = append(w.problems, fmt.Errorf(format, args...))
}

// checkWiring finds the mistakes Envoy would only show at run time, or not
// at all:
//   - a golang filter whose plugin_name, library_path or plugin_config does
//     not fit the plugin; http_filters that do not end with the router;
//   - a connection manager running the plugin without WebSocket upgrades;
//   - a kafka_clusters key that is no cluster, or a cluster whose endpoints
//     are not the plugin's listener socket (and a socket cluster that is not
//     a kafka_clusters key: its upgrades would carry no ticket);
//   - a route to a cluster that does not exist;
//   - a route to a kafka-scheme cluster where the plugin does not run;
//   - per-route plugin configs the plugin rejects, for an unknown plugin or
//     filter name, or on a route that is not kafka-scheme;
//   - a password_secret the filter does not list in generic_secrets, or a
//     generic secret that is not defined;
//   - a kafka-scheme cluster whose circuit breakers (Envoy's default is 1024)
//     would refuse upgrades below session.max_sessions;
//   - an idle timeout (the connection manager's stream_idle_timeout, a kafka
//     route's idle_timeout, the kafka-scheme cluster's upstream idle_timeout)
//     that is not longer than session.ping_interval, so that it would cut
//     quiet sessions whose only traffic is the server's pings;
//   - a route that takes its cluster from a request header (cluster_header)
//     where the plugin runs: the client would choose the Kafka cluster;
//   - the pub-sub filter after the router, or missing from a websocket
//     upgrade_configs[].filters list that replaces http_filters;
//   - a kafka route where the filter is disabled by default and not
//     enabled; as warnings (scope.go): the filter running on a route to no
//     kafka-scheme cluster, a kafka route whose timeout is not 0, and
//     session.drain_time in a bootstrap's listener;
//   - a filter configured by config_discovery whose config cannot be read
//     offline, or that Envoy would not take (discovered.go); a readable one
//     is checked as if it were inline.
func checkWiring(b *bootstrapv3.Bootstrap, opts Options) []error {
	w := &wiring{
		libraryPath:    opts.LibraryPath,
		readDiscovered: opts.ReadDiscovered,
		clusters:       map[string]*clusterv3.Cluster{},
		staticSecrets:  map[string]bool{},
		kafkaScheme:    map[string]bool{},
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		w.clusters[c.GetName()] = c
	}
	for _, s := range b.GetStaticResources().GetSecrets() {
		if s.GetGenericSecret() != nil {
			w.staticSecrets[s.GetName()] = true
		}
	}
	managers := w.connectionManagers(b)
	for _, cm := range managers {
		w.checkPlugin(cm)
	}
	if len(managers) == 0 {
		w.addf("static_resources.listeners: no HTTP connection manager found")
	}
	for _, cm := range managers {
		w.checkRoutes(cm)
	}
	return w.problems
}

// connectionManagers returns every HTTP connection manager of the static
// listeners, with the configs of discovered filters resolved
// (resolveDiscovered).
func (w *wiring) connectionManagers(b *bootstrapv3.Bootstrap) []*connectionManager {
	var out []*connectionManager
	for li, l := range b.GetStaticResources().GetListeners() {
		for ci, fc := range l.GetFilterChains() {
			for fi, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().MessageIs(hcm) && f.GetTypedConfig().UnmarshalTo(hcm) == nil {
					where := fmt.Sprintf("listener %q (static_resources.listeners[%d].filter_chains[%d].filters[%d])", l.GetName(), li, ci, fi)
					cm := &connectionManager{where: where, hcm: hcm}
					w.resolveDiscovered(cm)
					out = append(out, cm)
				}
			}
		}
	}
	return out
}

// checkPlugin checks the golang filters of cm and parses the pub-sub one.
func (w *wiring) checkPlugin(cm *connectionManager) {
	filters := cm.hcm.GetHttpFilters()
	if len(filters) == 0 || !filters[len(filters)-1].GetTypedConfig().MessageIs(&routerv3.Router{}) {
		w.addf("%s: http_filters must end with the router", cm.where)
	}
	w.checkFilterOrder(cm.where, "http_filters", filters)
	for i, hf := range filters {
		where := fmt.Sprintf("%s: http_filters[%d] %q", cm.where, i, hf.GetName())
		if hf.GetTypedConfig().MessageIs(&routerv3.Router{}) && i != len(filters)-1 {
			w.addf("%s: the router must be the last HTTP filter", where)
		}
		if file, ok := cm.discoveredFrom[hf]; ok {
			where += " (config_discovery " + file + ")"
		}
		golang := &golangv3alpha.Config{}
		if !hf.GetTypedConfig().MessageIs(golang) || hf.GetTypedConfig().UnmarshalTo(golang) != nil {
			continue
		}
		if golang.GetPluginName() != filter.PluginName {
			w.addf("%s: plugin_name %q: the .so registers %q; Envoy would pass every request through untouched", where, golang.GetPluginName(), filter.PluginName)
			continue
		}
		if golang.GetLibraryPath() != w.libraryPath {
			w.addf("%s: library_path %q: the plugin is installed at %s", where, golang.GetLibraryPath(), w.libraryPath)
		}
		if cm.plugin != nil {
			w.addf("%s: a second pub-sub filter in the same connection manager", where)
			continue
		}
		doc, err := filter.ParseFilterConfig(golang.GetPluginConfig())
		if err != nil {
			w.addf("%s: plugin_config: %v", where, err)
			continue
		}
		cm.filterName, cm.plugin, cm.disabledByDefault = hf.GetName(), doc, hf.GetDisabled()
		w.checkUpgradeFilters(cm)
		if !allowsWebSocket(cm.hcm) {
			w.addf("%s: upgrade_configs has no enabled websocket upgrade; Envoy would refuse every session", cm.where)
		}
		w.checkIdentity(cm, i, where)
		w.checkSecrets(where, golang, doc)
		w.checkKafkaClusters(where, doc)
		w.checkStreamIdleTimeout(cm)
		w.checkDrainTime(where, doc, cm.discoveredFrom[hf] != "")
	}
}

func allowsWebSocket(hcm *hcmv3.HttpConnectionManager) bool {
	for _, u := range hcm.GetUpgradeConfigs() {
		if strings.EqualFold(u.GetUpgradeType(), "websocket") && (u.GetEnabled() == nil || u.GetEnabled().GetValue()) {
			return true
		}
	}
	return false
}

// checkSecrets checks that every password_secret is declared on the filter
// and that every declared secret exists.
func (w *wiring) checkSecrets(where string, golang *golangv3alpha.Config, doc *config.Document) {
	declared := map[string]bool{}
	for i, s := range golang.GetGenericSecrets() {
		declared[s.GetName()] = true
		if s.GetSdsConfig() == nil && !w.staticSecrets[s.GetName()] {
			w.addf("%s: generic_secrets[%d] %q: no static generic_secret of that name (and no sds_config)", where, i, s.GetName())
		}
	}
	for _, name := range doc.ClusterNames() {
		sasl := doc.KafkaClusters[name].SASL
		if sasl != nil && sasl.PasswordSecret != "" && !declared[sasl.PasswordSecret] {
			w.addf("%s: kafka_clusters.%s.sasl.password_secret %q is not listed in the filter's generic_secrets; the plugin could not read it", where, name, sasl.PasswordSecret)
		}
		if sasl != nil && sasl.ClientSecretSecret != "" && !declared[sasl.ClientSecretSecret] {
			w.addf("%s: kafka_clusters.%s.sasl.client_secret_secret %q is not listed in the filter's generic_secrets; the plugin could not read it", where, name, sasl.ClientSecretSecret)
		}
	}
}

// checkKafkaClusters checks that each kafka_clusters key is a cluster whose
// endpoints are the plugin's socket, and that no other cluster points there.
func (w *wiring) checkKafkaClusters(where string, doc *config.Document) {
	for _, name := range doc.ClusterNames() {
		w.kafkaScheme[name] = true
		c, ok := w.clusters[name]
		if !ok {
			w.addf("%s: kafka_clusters.%s: no Envoy cluster of that name; define one whose endpoint is pipe {path: %s}", where, name, doc.Listener)
			continue
		}
		paths := pipePaths(c)
		if c.GetType() != clusterv3.Cluster_STATIC || len(paths) == 0 || slices.Contains(paths, "") {
			w.addf("%s: cluster %q: a kafka-scheme cluster must be STATIC with pipe endpoints at the plugin's listener %s", where, name, doc.Listener)
			continue
		}
		for _, p := range paths {
			if p != doc.Listener {
				w.addf("%s: cluster %q: endpoint pipe %s is not the plugin's listener %s", where, name, p, doc.Listener)
			}
		}
		if usesHTTP2(c) {
			w.addf("%s: cluster %q: must use HTTP/1.1 upstream (the session server answers WebSocket upgrades over HTTP/1.1)", where, name)
		}
		w.checkCircuitBreakers(where, c, doc.Session.MaxSessions)
		if d, ok := upstreamIdleTimeout(c); ok && d > 0 && d <= doc.Session.PingInterval.Duration() {
			w.addf("%s: cluster %q: upstream idle_timeout %s is not longer than session.ping_interval %s; quiet sessions would be cut", where, name, d, doc.Session.PingInterval.Duration())
		}
	}
	for _, name := range sortedKeys(w.clusters) {
		if doc.KafkaClusters[name] != nil {
			continue
		}
		for _, p := range pipePaths(w.clusters[name]) {
			if p == doc.Listener {
				w.addf("%s: cluster %q points at the plugin's listener %s but is not a kafka_clusters key; its upgrades would get no ticket (401)", where, name, p)
			}
		}
	}
}

// pipePaths returns the unix socket paths of c's endpoints; endpoints that
// are not pipes yield "".
func pipePaths(c *clusterv3.Cluster) []string {
	var paths []string
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, e := range le.GetLbEndpoints() {
			paths = append(paths, e.GetEndpoint().GetAddress().GetPipe().GetPath())
		}
	}
	return paths
}

// defaultCircuitBreakerLimit is what Envoy allows of each of
// max_connections, max_pending_requests and max_requests when a cluster
// sets no threshold.
const defaultCircuitBreakerLimit = 1024

// checkCircuitBreakers checks that c's default-priority thresholds let
// maxSessions sessions through: each session holds one upstream connection
// and one request, and a burst of upgrades waits as pending requests.
func (w *wiring) checkCircuitBreakers(where string, c *clusterv3.Cluster, maxSessions int) {
	var limits *clusterv3.CircuitBreakers_Thresholds
	for _, t := range c.GetCircuitBreakers().GetThresholds() {
		if t.GetPriority() == corev3.RoutingPriority_DEFAULT {
			limits = t
		}
	}
	for _, l := range []struct {
		name  string
		value *wrapperspb.UInt32Value
	}{
		{"max_connections", limits.GetMaxConnections()},
		{"max_pending_requests", limits.GetMaxPendingRequests()},
		{"max_requests", limits.GetMaxRequests()},
	} {
		limit, how := uint64(defaultCircuitBreakerLimit), "Envoy's default"
		if l.value != nil {
			limit, how = uint64(l.value.GetValue()), "circuit_breakers"
		}
		if limit < uint64(maxSessions) {
			w.addf("%s: cluster %q: %s %s %d is below session.max_sessions %d; upgrades beyond it would get 503 (set circuit_breakers.thresholds {priority: DEFAULT, %s: %d} or more)",
				where, c.GetName(), how, l.name, limit, maxSessions, l.name, maxSessions)
		}
	}
	for _, t := range c.GetCircuitBreakers().GetPerHostThresholds() {
		if v := t.GetMaxConnections(); t.GetPriority() == corev3.RoutingPriority_DEFAULT && v != nil && uint64(v.GetValue()) < uint64(maxSessions) {
			w.addf("%s: cluster %q: per_host_thresholds max_connections %d is below session.max_sessions %d; upgrades beyond it would get 503",
				where, c.GetName(), v.GetValue(), maxSessions)
		}
	}
}

// upstreamIdleTimeout returns the idle_timeout of c's upstream HTTP
// connections, if c sets one.
func upstreamIdleTimeout(c *clusterv3.Cluster) (time.Duration, bool) {
	for _, a := range c.GetTypedExtensionProtocolOptions() {
		opts := &upstreamhttpv3.HttpProtocolOptions{}
		if a.MessageIs(opts) && a.UnmarshalTo(opts) == nil && opts.GetCommonHttpProtocolOptions().GetIdleTimeout() != nil {
			return opts.GetCommonHttpProtocolOptions().GetIdleTimeout().AsDuration(), true
		}
	}
	//lint:ignore SA1019 deprecated, still honoured by Envoy
	if d := c.GetCommonHttpProtocolOptions().GetIdleTimeout(); d != nil {
		return d.AsDuration(), true
	}
	return 0, false
}

// defaultStreamIdleTimeout is the connection manager's stream_idle_timeout
// when the field is absent.
const defaultStreamIdleTimeout = 300 * time.Second

// checkStreamIdleTimeout checks that cm's stream_idle_timeout outlives the
// plugin's ping interval (zero disables the timeout).
func (w *wiring) checkStreamIdleTimeout(cm *connectionManager) {
	timeout := defaultStreamIdleTimeout
	if d := cm.hcm.GetStreamIdleTimeout(); d != nil {
		timeout = d.AsDuration()
	}
	if ping := cm.plugin.Session.PingInterval.Duration(); timeout > 0 && timeout <= ping {
		w.addf("%s: stream_idle_timeout %s is not longer than session.ping_interval %s; quiet sessions would be cut", cm.where, timeout, ping)
	}
}

// usesHTTP2 reports whether c explicitly switches its upstream to HTTP/2 or
// HTTP/3.
func usesHTTP2(c *clusterv3.Cluster) bool {
	//lint:ignore SA1019 deprecated, still honoured by Envoy
	if c.GetHttp2ProtocolOptions() != nil {
		return true
	}
	for _, a := range c.GetTypedExtensionProtocolOptions() {
		opts := &upstreamhttpv3.HttpProtocolOptions{}
		if !a.MessageIs(opts) || a.UnmarshalTo(opts) != nil {
			continue
		}
		explicit := opts.GetExplicitHttpConfig()
		if explicit.GetHttp2ProtocolOptions() != nil || explicit.GetHttp3ProtocolOptions() != nil {
			return true
		}
	}
	return false
}

// checkRoutes checks every route of cm's inline route configuration.
func (w *wiring) checkRoutes(cm *connectionManager) {
	rc := cm.hcm.GetRouteConfig()
	if rc == nil {
		w.addf("%s: only inline route_config can be checked offline", cm.where)
		return
	}
	filterNames := map[string]bool{}
	for _, hf := range cm.hcm.GetHttpFilters() {
		filterNames[hf.GetName()] = true
	}
	for _, vh := range rc.GetVirtualHosts() {
		vhWhere := fmt.Sprintf("%s: virtual host %q", cm.where, vh.GetName())
		w.checkFilterScope(cm, rc, vh, vhWhere)
		w.checkPerFilterConfigs(cm, vhWhere, filterNames, vh.GetTypedPerFilterConfig(), "")
		for ri, r := range vh.GetRoutes() {
			where := fmt.Sprintf("%s: routes[%d] (%s)", vhWhere, ri, describeMatch(r.GetMatch()))
			clusters := routeClusters(r.GetRoute())
			if cm.plugin != nil && usesClusterHeader(r.GetRoute()) {
				w.addf("%s: takes its cluster from a request header (cluster_header) where the pub-sub filter runs; a client could pick any kafka-scheme cluster", where)
			}
			for _, c := range clusters {
				if _, ok := w.clusters[c]; !ok {
					w.addf("%s: cluster %q does not exist", where, c)
				}
			}
			kafkaCluster := ""
			for _, c := range clusters {
				if w.kafkaScheme[c] {
					kafkaCluster = c
				}
			}
			if kafkaCluster != "" && cm.plugin == nil {
				w.addf("%s: routes to kafka-scheme cluster %q but the pub-sub filter does not run in this connection manager; sessions would get no ticket (401)", where, kafkaCluster)
			}
			if kafkaCluster != "" && cm.plugin != nil {
				w.checkKafkaRouteTimeout(where, r.GetRoute())
			}
			if d := r.GetRoute().GetIdleTimeout(); kafkaCluster != "" && cm.plugin != nil && d != nil {
				if ping := cm.plugin.Session.PingInterval.Duration(); d.AsDuration() > 0 && d.AsDuration() <= ping {
					w.addf("%s: idle_timeout %s is not longer than session.ping_interval %s; quiet sessions would be cut", where, d.AsDuration(), ping)
				}
			}
			w.checkPerFilterConfigs(cm, where, filterNames, r.GetTypedPerFilterConfig(), kafkaCluster)
		}
	}
}

// routeClusters returns the clusters a route action names.
func routeClusters(a *routev3.RouteAction) []string {
	if a.GetCluster() != "" {
		return []string{a.GetCluster()}
	}
	var names []string
	for _, wc := range a.GetWeightedClusters().GetClusters() {
		names = append(names, wc.GetName())
	}
	return names
}

// usesClusterHeader reports whether a route action, or one of its weighted
// clusters, names its cluster by a request header.
func usesClusterHeader(a *routev3.RouteAction) bool {
	if a.GetClusterHeader() != "" {
		return true
	}
	for _, wc := range a.GetWeightedClusters().GetClusters() {
		if wc.GetClusterHeader() != "" {
			return true
		}
	}
	return false
}

func describeMatch(m *routev3.RouteMatch) string {
	switch {
	case m.GetPrefix() != "":
		return "prefix " + m.GetPrefix()
	case m.GetPath() != "":
		return "path " + m.GetPath()
	case m.GetPathSeparatedPrefix() != "":
		return "path_separated_prefix " + m.GetPathSeparatedPrefix()
	default:
		return "match " + m.String()
	}
}

// checkPerFilterConfigs checks typed_per_filter_config of a virtual host
// (kafkaCluster "") or route. A route that reaches a kafka-scheme cluster must
// not disable the plugin; narrowing configs belong on such routes only.
func (w *wiring) checkPerFilterConfigs(cm *connectionManager, where string, filterNames map[string]bool, configs map[string]*anypb.Any, kafkaCluster string) {
	for _, name := range sortedKeys(configs) {
		a := configs[name]
		if !filterNames[name] {
			w.addf("%s: typed_per_filter_config.%s: no HTTP filter of that name in this connection manager", where, name)
			continue
		}
		if name != cm.filterName {
			continue
		}
		fieldWhere := where + ": typed_per_filter_config." + name
		perRoute, disabled, err := unwrapFilterConfig(a)
		if err != nil {
			w.addf("%s: %v", fieldWhere, err)
			continue
		}
		if disabled && kafkaCluster != "" {
			w.addf("%s: disables the pub-sub filter on a route to kafka-scheme cluster %q; sessions would get no ticket (401)", fieldWhere, kafkaCluster)
		}
		if perRoute == nil {
			continue
		}
		for _, plugin := range sortedKeys(perRoute.GetPluginsConfig()) {
			rp := perRoute.GetPluginsConfig()[plugin]
			pluginWhere := fieldWhere + ".plugins_config." + plugin
			if plugin != filter.PluginName {
				w.addf("%s: the .so has no plugin %q (it registers %q)", pluginWhere, plugin, filter.PluginName)
				continue
			}
			if rp.GetDisabled() && kafkaCluster != "" {
				w.addf("%s: disables the plugin on a route to kafka-scheme cluster %q; sessions would get no ticket (401)", pluginWhere, kafkaCluster)
			}
			if rp.GetConfig() == nil {
				continue
			}
			route, err := filter.ParseRouteConfig(rp.GetConfig())
			if err != nil {
				w.addf("%s.config: %v", pluginWhere, err)
			} else if err := config.CheckRouteAccess(route, cm.plugin.Identity); err != nil {
				w.addf("%s.config: %v", pluginWhere, err)
			}
			if kafkaCluster == "" {
				w.addf("%s: narrows sessions on a %s that routes to no kafka-scheme cluster; it has no effect", pluginWhere, routeOrHost(where))
			}
		}
	}
}

func routeOrHost(where string) string {
	if strings.Contains(where, "routes[") {
		return "route"
	}
	return "virtual host (set it on the routes)"
}

// unwrapFilterConfig returns the golang ConfigsPerRoute in a, which may be
// wrapped in an envoy.config.route.v3.FilterConfig, and whether the filter
// is disabled there.
func unwrapFilterConfig(a *anypb.Any) (*golangv3alpha.ConfigsPerRoute, bool, error) {
	fc := &routev3.FilterConfig{}
	if a.MessageIs(fc) {
		if err := a.UnmarshalTo(fc); err != nil {
			return nil, false, err
		}
		if fc.GetConfig() == nil || isEmptyAny(fc.GetConfig()) {
			return nil, fc.GetDisabled(), nil // an empty config enables the filter explicitly
		}
		a = fc.GetConfig()
	}
	perRoute := &golangv3alpha.ConfigsPerRoute{}
	if !a.MessageIs(perRoute) {
		return nil, false, fmt.Errorf("%s is not a golang ConfigsPerRoute", a.GetTypeUrl())
	}
	if err := a.UnmarshalTo(perRoute); err != nil {
		return nil, false, err
	}
	return perRoute, fc.GetDisabled(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
