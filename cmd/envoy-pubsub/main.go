// Command envoy-pubsub is the Envoy Go HTTP filter library (build it with
// build.sh as a c-shared .so). It only registers the filter under the
// plugin_name "pubsub"; everything else lives in package filter.
package main

import (
	"github.com/envoyproxy/envoy/contrib/golang/filters/http/source/go/pkg/http"

	"github.com/envoy-pubsub/gateway/filter"
)

func init() {
	http.RegisterHttpFilterFactoryAndConfigParser(filter.PluginName, filter.Factory, &filter.Parser{})
}

func main() {}
