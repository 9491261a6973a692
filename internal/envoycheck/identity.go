package envoycheck

import (
	"fmt"
	"regexp"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/envoy-pubsub/gateway/identity"
)

// checkIdentity checks the identity section of cm's plugin (the pub-sub
// filter is http_filters[index]), where is the filter's location:
//   - identity.required needs envoy_jwt_metadata and a jwt_authn filter
//     before the pub-sub filter, else every upgrade would get 401;
//   - envoy_jwt_metadata needs a jwt_authn provider whose
//     payload_in_metadata is that key, before the pub-sub filter;
//   - no access log of cm may write a token: the request path with its
//     query (?access_token=), which Envoy's default format does, or the
//     Authorization header.
func (w *wiring) checkIdentity(cm *connectionManager, index int, where string) {
	id := cm.plugin.Identity
	if id == nil {
		return
	}
	if id.Required && id.EnvoyJWTMetadata == "" {
		w.addf("%s: identity.required: inside Envoy the identity comes from jwt_authn; set identity.envoy_jwt_metadata to its payload_in_metadata key, or every upgrade gets 401", where)
	}
	if id.EnvoyJWTMetadata != "" {
		before, after := jwtAuthnFilters(cm, index)
		switch {
		case len(before) == 0 && len(after) > 0:
			w.addf("%s: identity: jwt_authn runs after the pub-sub filter; move it before, or sessions carry no identity%s", where, requiredNote(id.Required))
		case len(before) == 0:
			w.addf("%s: identity: no jwt_authn filter runs before the pub-sub filter, so sessions carry no identity%s", where, requiredNote(id.Required))
		case !writesPayload(before, id.EnvoyJWTMetadata):
			w.addf("%s: identity.envoy_jwt_metadata %q: no jwt_authn provider sets payload_in_metadata %q, so sessions carry no identity%s", where, id.EnvoyJWTMetadata, id.EnvoyJWTMetadata, requiredNote(id.Required))
		}
	}
	for i, al := range cm.hcm.GetAccessLog() {
		if leak := tokenLeak(al); leak != "" {
			w.addf("%s: access_log[%d] %q: %s, which writes tokens to the log; log %%PATH(NQ)%% (the path without its query) instead", cm.where, i, al.GetName(), leak)
		}
	}
}

func requiredNote(required bool) string {
	if required {
		return " and every upgrade gets 401 (identity.required)"
	}
	return ""
}

// jwtAuthnFilters returns the jwt_authn configs of cm before and after
// http_filters[index].
func jwtAuthnFilters(cm *connectionManager, index int) (before, after []*jwtauthnv3.JwtAuthentication) {
	for i, hf := range cm.hcm.GetHttpFilters() {
		ja := &jwtauthnv3.JwtAuthentication{}
		if !hf.GetTypedConfig().MessageIs(ja) || hf.GetTypedConfig().UnmarshalTo(ja) != nil {
			continue
		}
		if i < index {
			before = append(before, ja)
		} else {
			after = append(after, ja)
		}
	}
	return before, after
}

// writesPayload reports whether a provider of configs puts the verified
// payload under key.
func writesPayload(configs []*jwtauthnv3.JwtAuthentication, key string) bool {
	for _, ja := range configs {
		for _, p := range ja.GetProviders() {
			if p.GetPayloadInMetadata() == key {
				return true
			}
		}
	}
	return false
}

// tokenCommands matches the access log commands that write the request
// path with its query string, and the one that writes the Authorization
// header: %PATH%, %PATH(WQ...)%, %PATH(:...)%, and %REQ(...)% or
// %REQUEST_HEADER(...)% of :path, x-envoy-original-path or authorization.
var tokenCommands = regexp.MustCompile(`(?i)%PATH(\((WQ)?(:[A-Z_]*)?\))?%|%(REQ|REQUEST_HEADER)\((:PATH|X-ENVOY-ORIGINAL-PATH|AUTHORIZATION)[^)]*\)`)

// tokenLeak says how al would write a token, "" when it would not. An
// access logger whose format the check cannot see (one without log_format)
// writes Envoy's default format, which holds the path with its query.
func tokenLeak(al *accesslogv3.AccessLog) string {
	msg, err := al.GetTypedConfig().UnmarshalNew()
	if err != nil {
		return "" // Validate reports an Any it cannot read
	}
	js, err := protojson.Marshal(msg)
	if err != nil {
		return ""
	}
	if !logFormatSet.Match(js) {
		return "no log_format: Envoy's default format logs the path with its query (?" + identity.AccessTokenParam + "=)"
	}
	if m := tokenCommands.Find(js); m != nil {
		return fmt.Sprintf("the format has %s", m)
	}
	return ""
}

// logFormatSet finds a format in the JSON of an access logger's config.
var logFormatSet = regexp.MustCompile(`"(logFormat|format|jsonFormat|textFormat|textFormatSource)"`)
