// Package envoycheck checks Envoy bootstrap files that run the pub-sub
// plugin, without an Envoy binary: each file is parsed into go-control-plane's
// Bootstrap message, validated with the protoc-gen-validate rules of Envoy's
// API (on the bootstrap and on every Any inside it, which PGV does not descend
// into), every plugin_config and per-route plugin config goes through the
// plugin's own parser, and the wiring between the plugin and Envoy is checked
// (see Check). An HTTP filter whose config comes from extension config
// discovery is checked with the TypedExtensionConfig of its
// path_config_source file, as if it were inline (Source.Problems reads the
// file beside the bootstrap).
package envoycheck

import (
	"errors"
	"fmt"
	"strings"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"

	// Types that may appear in an Any of our bootstraps; protojson resolves
	// "@type" through the global registry these packages register into.
	_ "github.com/cncf/xds/go/xds/type/v3"
	_ "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// Options adjust the checks to a deployment.
type Options struct {
	// LibraryPath is where the plugin's .so is installed; golang filters
	// must load it from there. Default: the Docker image's LibraryPath.
	LibraryPath string
	// ReadDiscovered returns the text of the file at path, a
	// path_config_source of a filter's config_discovery, as Envoy would
	// read it (ErrNoDiscoveredFile if there is none). Source.Problems
	// reads it beside the bootstrap. Default: nil, and such a filter is
	// refused.
	ReadDiscovered func(path string) ([]byte, error)
}

// Check parses doc (YAML or JSON) as an Envoy bootstrap and reports every
// problem Problems finds with default options, joined.
func Check(doc []byte) error {
	return errors.Join(Problems(doc, Options{})...)
}

// Problems parses doc (YAML or JSON) as an Envoy bootstrap and returns every
// problem found: proto schema errors, PGV validation errors at any depth,
// plugin configurations the plugin's parser rejects, and wiring mistakes
// between the plugin and Envoy (see checkWiring). Problems name the field
// path they were found at. Discovered filter configs are read with
// opts.ReadDiscovered.
func Problems(doc []byte, opts Options) []error {
	if opts.LibraryPath == "" {
		opts.LibraryPath = LibraryPath
	}
	b, err := ParseBootstrap(doc)
	if err != nil {
		return []error{err}
	}
	problems := Validate(b)
	return append(problems, checkWiring(b, opts)...)
}

// ParseBootstrap decodes a YAML or JSON bootstrap strictly: unknown fields and
// Any types that are not registered are errors.
func ParseBootstrap(doc []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("envoycheck: not YAML: %w", err)
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		hint := ""
		if strings.Contains(err.Error(), "unable to resolve") {
			hint = " (if the type is a real Envoy extension, import its go-control-plane package in internal/envoycheck)"
		}
		return nil, fmt.Errorf("envoycheck: not a valid envoy.config.bootstrap.v3.Bootstrap: %w%s", err, hint)
	}
	return b, nil
}

// Validate runs ValidateAll on m and on every message packed in an Any
// anywhere below it (recursively), and reports each failure with the path of
// the Any it came from.
func Validate(m proto.Message) []error {
	var problems []error
	validateOne(m, "", &problems)
	walkAnys(m.ProtoReflect(), "", func(path string, a *anypb.Any) {
		if isEmptyAny(a) && strings.HasSuffix(path, "<"+filterConfigType+">.config") {
			return // FilterConfig{config: {}} enables a filter on a route
		}
		inner, err := a.UnmarshalNew()
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: cannot unpack %s: %w", path, a.GetTypeUrl(), err))
			return
		}
		validateOne(inner, path, &problems)
	})
	return problems
}

// validator is what protoc-gen-validate generates on every message.
type validator interface{ ValidateAll() error }

func validateOne(m proto.Message, path string, problems *[]error) {
	v, ok := m.(validator)
	if !ok {
		return
	}
	if err := v.ValidateAll(); err != nil {
		where := string(m.ProtoReflect().Descriptor().FullName())
		if path != "" {
			where = path + " (" + where + ")"
		}
		*problems = append(*problems, fmt.Errorf("%s: %w", where, err))
	}
}

// walkAnys calls visit for every Any below m, depth first; the messages
// packed in an Any are walked too. Paths use the proto field names.
func walkAnys(m protoreflect.Message, path string, visit func(path string, a *anypb.Any)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		visit(path, a)
		if inner, err := a.UnmarshalNew(); err == nil {
			walkAnys(inner.ProtoReflect(), path+"<"+shortTypeName(a.GetTypeUrl())+">", visit)
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := join(path, string(fd.Name()))
		switch {
		case fd.IsList() && fd.Message() != nil:
			list := v.List()
			for i := range list.Len() {
				walkAnys(list.Get(i).Message(), fmt.Sprintf("%s[%d]", name, i), visit)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				walkAnys(mv.Message(), fmt.Sprintf("%s[%s]", name, k.String()), visit)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walkAnys(v.Message(), name, visit)
		}
		return true
	})
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func shortTypeName(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '/')+1:]
}
