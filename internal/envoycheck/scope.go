package envoycheck

import (
	"errors"
	"fmt"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/filter"
)

// Warning is a problem that costs performance or robustness but breaks no
// session; the command prints it without failing. Check and Problems
// report warnings like every other problem.
type Warning struct{ Err error }

func (w Warning) Error() string { return "warning: " + w.Err.Error() }
func (w Warning) Unwrap() error { return w.Err }

// IsWarning reports whether problem is a Warning.
func IsWarning(problem error) bool {
	var w Warning
	return errors.As(problem, &w)
}

func (w *wiring) warnf(format string, args ...any) {
	w.problems = append(w.problems, Warning{fmt.Errorf(format, args...)})
}

// filterConfigType is the full name of envoy.config.route.v3.FilterConfig.
var filterConfigType = string((&routev3.FilterConfig{}).ProtoReflect().Descriptor().FullName())

func isEmptyAny(a *anypb.Any) bool { return a.GetTypeUrl() == "" && len(a.GetValue()) == 0 }

// checkFilterOrder refuses a pub-sub filter placed after the router in a
// filter list: Envoy runs filters in order and the router ends the chain,
// so the plugin would never see a request.
func (w *wiring) checkFilterOrder(where, field string, filters []*hcmv3.HttpFilter) {
	router := -1
	for i, hf := range filters {
		if hf.GetTypedConfig().MessageIs(&routerv3.Router{}) && router < 0 {
			router = i
		}
		if router >= 0 && i > router && isPubSubFilter(hf) {
			w.addf("%s: %s[%d] %q: the pub-sub filter comes after the router (%s[%d]); Envoy never runs it and sessions would get no ticket (401)", where, field, i, hf.GetName(), field, router)
		}
	}
}

// isPubSubFilter reports whether hf is a golang filter running this plugin.
func isPubSubFilter(hf *hcmv3.HttpFilter) bool {
	golang := &golangv3alpha.Config{}
	return hf.GetTypedConfig().MessageIs(golang) && hf.GetTypedConfig().UnmarshalTo(golang) == nil && golang.GetPluginName() == filter.PluginName
}

// checkUpgradeFilters refuses a websocket upgrade config with a filter list
// of its own that lacks the pub-sub filter: Envoy then builds WebSocket
// streams from that list instead of http_filters, and no session would get
// a ticket.
func (w *wiring) checkUpgradeFilters(cm *connectionManager) {
	for i, u := range cm.hcm.GetUpgradeConfigs() {
		if len(u.GetFilters()) == 0 || !allowsWebSocket(&hcmv3.HttpConnectionManager{UpgradeConfigs: []*hcmv3.HttpConnectionManager_UpgradeConfig{u}}) {
			continue
		}
		field := fmt.Sprintf("upgrade_configs[%d].filters", i)
		found := false
		for _, hf := range u.GetFilters() {
			found = found || isPubSubFilter(hf)
		}
		if !found {
			w.addf("%s: %s replaces http_filters for WebSocket upgrades but has no pub-sub golang filter; sessions would get no ticket (401)", cm.where, field)
		}
		w.checkFilterOrder(cm.where, field, u.GetFilters())
	}
}

// pubSubRunsOn reports whether Envoy creates the pub-sub filter for
// requests matched by route r of virtual host vh: the most specific
// typed_per_filter_config of the filter (route, then virtual host, then
// route configuration) decides, else the filter's disabled flag. A
// FilterConfig with disabled: true disables it; any other per-filter config
// enables it.
func pubSubRunsOn(cm *connectionManager, rc *routev3.RouteConfiguration, vh *routev3.VirtualHost, r *routev3.Route) bool {
	for _, configs := range []map[string]*anypb.Any{r.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig(), rc.GetTypedPerFilterConfig()} {
		a, ok := configs[cm.filterName]
		if !ok {
			continue
		}
		fc := &routev3.FilterConfig{}
		if a.MessageIs(fc) && a.UnmarshalTo(fc) == nil {
			return !fc.GetDisabled()
		}
		return true
	}
	return !cm.disabledByDefault
}

// checkFilterScope checks where the pub-sub filter runs in virtual host vh:
// a route to a kafka-scheme cluster where it does not run would get no
// ticket (refused); a route to any other cluster where it runs pays for a
// call into Go on each request and data chunk for nothing (a warning).
func (w *wiring) checkFilterScope(cm *connectionManager, rc *routev3.RouteConfiguration, vh *routev3.VirtualHost, vhWhere string) {
	if cm.plugin == nil {
		return
	}
	for ri, r := range vh.GetRoutes() {
		where := fmt.Sprintf("%s: routes[%d] (%s)", vhWhere, ri, describeMatch(r.GetMatch()))
		kafka := false
		for _, c := range routeClusters(r.GetRoute()) {
			kafka = kafka || w.kafkaScheme[c]
		}
		runs := pubSubRunsOn(cm, rc, vh, r)
		switch {
		case kafka && !runs && cm.disabledByDefault:
			w.addf("%s: routes to a kafka-scheme cluster but the pub-sub filter is disabled by default (http_filters %q disabled: true) and nothing enables it here; sessions would get no ticket (401): add typed_per_filter_config {%s: {\"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig, config: {}}}", where, cm.filterName, cm.filterName)
		case !kafka && runs:
			w.warnf("%s: the pub-sub filter runs on a route to no kafka-scheme cluster: each request and each data chunk of its streams calls into Go for nothing; disable it here (typed_per_filter_config {%s: {\"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}}) or set disabled: true on the filter and enable it on the kafka routes", where, cm.filterName)
		}
	}
}

// checkKafkaRouteTimeout warns about a kafka route whose timeout (Envoy's
// default 15s when absent) is not 0: Envoy arms the route timeout again
// when the downstream ends its request, which in a session is the client's
// half-close, and then cuts the session.
func (w *wiring) checkKafkaRouteTimeout(where string, a *routev3.RouteAction) {
	timeout := "15s (Envoy's default)"
	if d := a.GetTimeout(); d != nil {
		if d.AsDuration() == 0 {
			return
		}
		timeout = d.AsDuration().String()
	}
	w.warnf("%s: a kafka route's timeout is %s; set timeout: 0s so that the route timeout never runs during a session", where, timeout)
}

// checkDrainTime warns about session.drain_time in a bootstrap's listener:
// it says that a newer filter config on the socket replaces this one by a
// listener update that drains it (LDS). Envoy updates a static listener
// only by a restart, and a newer config that comes from extension config
// discovery or another listener drains nothing: the older config's sessions
// would get 1001 while Envoy would keep them.
func (w *wiring) checkDrainTime(where string, doc *config.Document, discovered bool) {
	d := doc.Session.DrainTime.Duration()
	if d <= 0 {
		return
	}
	why := "a static listener changes only by a restart"
	if discovered {
		why = "a filter config from config_discovery is replaced without a drain"
	}
	w.warnf("%s: session.drain_time %s: %s, so a newer config on the socket drains nothing and this config's sessions would get 1001 needlessly; set it only for listeners LDS replaces (docs/envoy-deployment.md, \"Restarts and shutdown\")", where, d, why)
}
