package envoycheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	"github.com/envoy-pubsub/gateway/filter"
)

// ErrNoDiscoveredFile is what an Options.ReadDiscovered returns for a file
// it does not have.
var ErrNoDiscoveredFile = errors.New("not found beside the bootstrap")

// resolveDiscovered gives every HTTP filter of cm configured by extension
// config discovery (config_discovery) the typed_config that Envoy would
// discover, so that every check sees it as if it were inline: the
// TypedExtensionConfig of its path_config_source file, read with
// w.readDiscovered. The file must be a DiscoveryResponse holding exactly one
// TypedExtensionConfig named like the filter, of a type the filter's
// type_urls allow (Envoy rejects anything else); it is validated like the
// bootstrap. Filters whose config comes from a management server (ads,
// api_config_source) cannot be checked offline and are refused.
func (w *wiring) resolveDiscovered(cm *connectionManager) {
	lists := [][]*hcmv3.HttpFilter{cm.hcm.GetHttpFilters()}
	for _, u := range cm.hcm.GetUpgradeConfigs() {
		lists = append(lists, u.GetFilters())
	}
	for _, filters := range lists {
		for _, hf := range filters {
			if hf.GetConfigDiscovery() == nil {
				continue
			}
			where := fmt.Sprintf("%s: HTTP filter %q: config_discovery", cm.where, hf.GetName())
			file, tec := w.discover(where, hf)
			if tec == nil {
				continue
			}
			hf.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: tec.GetTypedConfig()}
			if cm.discoveredFrom == nil {
				cm.discoveredFrom = map[*hcmv3.HttpFilter]string{}
			}
			cm.discoveredFrom[hf] = file
		}
	}
}

// discover reads the TypedExtensionConfig hf's config_discovery points at
// and returns it with its file's path; nil after reporting a problem.
func (w *wiring) discover(where string, hf *hcmv3.HttpFilter) (string, *corev3.TypedExtensionConfig) {
	ecs := hf.GetConfigDiscovery()
	source := ecs.GetConfigSource()
	w.checkDefaultConfig(where, ecs.GetDefaultConfig())
	file := source.GetPathConfigSource().GetPath()
	if file == "" {
		//lint:ignore SA1019 deprecated, still honoured by Envoy
		file = source.GetPath()
	}
	if file == "" {
		w.addf("%s: the config comes from a management server; envoy-pubsub-check checks path_config_source files only (check the served TypedExtensionConfig as a file, or inline)", where)
		return "", nil
	}
	where += " " + file
	if w.readDiscovered == nil {
		w.addf("%s: no file beside the bootstrap to read it from", where)
		return "", nil
	}
	text, err := w.readDiscovered(file)
	if err != nil {
		w.addf("%s: %v (it is looked up beside the bootstrap, by its base name %s)", where, err, path.Base(file))
		return "", nil
	}
	js, err := yaml.YAMLToJSON(text)
	if err != nil {
		w.addf("%s: not YAML: %v", where, err)
		return "", nil
	}
	var resp discoveryFile
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&resp); err != nil {
		w.addf("%s: not a DiscoveryResponse: %v", where, err)
		return "", nil
	}
	if n := len(resp.Resources); n != 1 {
		w.addf("%s: holds %d resources; Envoy takes exactly one TypedExtensionConfig", where, n)
		return "", nil
	}
	resource := &anypb.Any{}
	if err := protojson.Unmarshal(resp.Resources[0], resource); err != nil {
		w.addf("%s: resources[0]: %v", where, err)
		return "", nil
	}
	tec := &corev3.TypedExtensionConfig{}
	if err := resource.UnmarshalTo(tec); err != nil {
		w.addf("%s: resources[0] is %s, not an envoy.config.core.v3.TypedExtensionConfig", where, resource.GetTypeUrl())
		return "", nil
	}
	if problems := Validate(tec); len(problems) > 0 {
		for _, p := range problems {
			w.addf("%s: resources[0]: %v", where, p)
		}
		return "", nil
	}
	if tec.GetName() != hf.GetName() {
		w.addf("%s: resources[0] is named %q; Envoy takes only the resource named like the filter, %q", where, tec.GetName(), hf.GetName())
		return "", nil
	}
	if got := tec.GetTypedConfig().GetTypeUrl(); !slices.Contains(ecs.GetTypeUrls(), got) {
		w.addf("%s: resources[0].typed_config is %s, which type_urls %v does not allow; Envoy would reject it", where, got, ecs.GetTypeUrls())
		return "", nil
	}
	return file, tec
}

// checkDefaultConfig runs a pub-sub golang config that config_discovery
// names as its default_config (used until the first discovery, or when the
// discovered one is removed) through the plugin's parser; the API's rules
// ran on it with the bootstrap.
func (w *wiring) checkDefaultConfig(where string, a *anypb.Any) {
	golang := &golangv3alpha.Config{}
	if a == nil || !a.MessageIs(golang) || a.UnmarshalTo(golang) != nil || golang.GetPluginName() != filter.PluginName {
		return
	}
	if _, err := filter.ParseFilterConfig(golang.GetPluginConfig()); err != nil {
		w.addf("%s: default_config.plugin_config: %v", where, err)
	}
}

// discoveryFile is the envoy.service.discovery.v3.DiscoveryResponse a
// path_config_source file holds, decoded strictly by its JSON field names
// (go-control-plane's DiscoveryResponse package would pull gRPC into the
// module); each resource is decoded as the Any it is, with the API's types.
type discoveryFile struct {
	VersionInfo    string            `json:"version_info"`
	Resources      []json.RawMessage `json:"resources"`
	Canary         bool              `json:"canary"`
	TypeURL        string            `json:"type_url"`
	Nonce          string            `json:"nonce"`
	ControlPlane   json.RawMessage   `json:"control_plane"`
	ResourceErrors []json.RawMessage `json:"resource_errors"`
}
