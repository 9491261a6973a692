package filter

import (
	"fmt"

	udpatype "github.com/cncf/xds/go/udpa/type/v1"
	xdstype "github.com/cncf/xds/go/xds/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/envoy-pubsub/gateway/config"
)

// Type URLs accepted as plugin_config.
var (
	typedStructURL     = "type.googleapis.com/" + string((&xdstype.TypedStruct{}).ProtoReflect().Descriptor().FullName())
	udpaTypedStructURL = "type.googleapis.com/" + string((&udpatype.TypedStruct{}).ProtoReflect().Descriptor().FullName())
	structURL          = "type.googleapis.com/" + string((&structpb.Struct{}).ProtoReflect().Descriptor().FullName())
)

// ParseFilterConfig decodes a filter-level plugin_config into the
// configuration document, with the same strict validation and defaults as
// the standalone server's file (config.Parse). The Any holds an
// xds.type.v3.TypedStruct, a udpa.type.v1.TypedStruct or a bare
// google.protobuf.Struct whose fields are the document; an absent
// plugin_config is the empty document.
func ParseFilterConfig(a *anypb.Any) (*config.Document, error) {
	js, err := documentJSON(a)
	if err != nil {
		return nil, err
	}
	return config.Parse(js)
}

// ParseRouteConfig decodes a per-route plugin config (ConfigsPerRoute) into
// a route document, strictly: unknown keys and bad patterns are errors.
func ParseRouteConfig(a *anypb.Any) (*config.Route, error) {
	js, err := documentJSON(a)
	if err != nil {
		return nil, err
	}
	return config.ParseRoute(js)
}

// documentJSON returns the JSON of the document carried by a.
func documentJSON(a *anypb.Any) ([]byte, error) {
	if a == nil || (a.GetTypeUrl() == "" && len(a.GetValue()) == 0) {
		return []byte("{}"), nil
	}
	var doc *structpb.Struct
	switch a.GetTypeUrl() {
	case typedStructURL:
		var ts xdstype.TypedStruct
		if err := a.UnmarshalTo(&ts); err != nil {
			return nil, fmt.Errorf("config: plugin_config: %w", err)
		}
		doc = ts.GetValue()
	case udpaTypedStructURL:
		var ts udpatype.TypedStruct
		if err := a.UnmarshalTo(&ts); err != nil {
			return nil, fmt.Errorf("config: plugin_config: %w", err)
		}
		doc = ts.GetValue()
	case structURL:
		doc = &structpb.Struct{}
		if err := a.UnmarshalTo(doc); err != nil {
			return nil, fmt.Errorf("config: plugin_config: %w", err)
		}
	default:
		return nil, fmt.Errorf("config: plugin_config: type %q is not supported; use xds.type.v3.TypedStruct", a.GetTypeUrl())
	}
	if doc == nil {
		return []byte("{}"), nil
	}
	js, err := protojson.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("config: plugin_config: %w", err)
	}
	return js, nil
}
