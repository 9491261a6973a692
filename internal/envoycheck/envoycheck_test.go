package envoycheck

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"sigs.k8s.io/yaml"
)

// moduleRoot returns the repository root (the directory holding go.mod).
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	return root
}

// repositoryBootstraps returns the text of the repository's bootstraps by
// name, each followed by the files its config discovery reads beside it
// (see withFiles), for the tests to edit as one text.
func repositoryBootstraps(t *testing.T) map[string][]byte {
	t.Helper()
	sources, err := Find(moduleRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]byte{}
	for _, s := range sources {
		byName[s.Name] = []byte(withFiles(s))
	}
	return byName
}

// fileMarker starts a file appended to a bootstrap's text by withFiles.
const fileMarker = "#>> file beside the bootstrap: "

// withFiles returns s's text followed, for each file its config discovery
// reads, by a line fileMarker + the file's base name and the file's text.
func withFiles(s Source) string {
	text := string(s.YAML)
	s.Problems(Options{ReadDiscovered: func(p string) ([]byte, error) {
		data, err := s.beside(path.Base(p))
		if err == nil {
			text += "\n" + fileMarker + path.Base(p) + "\n" + string(data)
		}
		return data, err
	}})
	return text
}

// splitFiles undoes withFiles: the bootstrap's text and Options that read
// the files from the rest.
func splitFiles(text string) ([]byte, Options) {
	parts := strings.Split(text, "\n"+fileMarker)
	files := map[string][]byte{}
	for _, part := range parts[1:] {
		name, body, _ := strings.Cut(part, "\n")
		files[name] = []byte(body)
	}
	return []byte(parts[0]), Options{ReadDiscovered: func(p string) ([]byte, error) {
		data, ok := files[path.Base(p)]
		if !ok {
			return nil, fmt.Errorf("%s: %w", path.Base(p), ErrNoDiscoveredFile)
		}
		return data, nil
	}}
}

// problemsOf checks a text of repositoryBootstraps.
func problemsOf(text []byte) []error {
	b, opts := splitFiles(string(text))
	return Problems(b, opts)
}

// check checks a text of repositoryBootstraps, joining the problems.
func check(text []byte) error { return errors.Join(problemsOf(text)...) }

// parseBootstrap parses the bootstrap of a text of repositoryBootstraps.
func parseBootstrap(t *testing.T, text []byte) *bootstrapv3.Bootstrap {
	t.Helper()
	doc, _ := splitFiles(string(text))
	b, err := ParseBootstrap(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	exampleBootstrap    = "envoy.yaml"
	kubernetesBootstrap = "deploy/kubernetes/envoy-configmap.yaml#ConfigMap/envoy-pubsub/envoy.yaml"
)

func TestRepositoryBootstrapsAreValid(t *testing.T) {
	bootstraps := repositoryBootstraps(t)
	for _, want := range []string{exampleBootstrap, kubernetesBootstrap} {
		if bootstraps[want] == nil {
			t.Errorf("bootstrap %s not found; found %v", want, sortedKeys(bootstraps))
		}
	}
	for _, name := range sortedKeys(bootstraps) {
		t.Run(name, func(t *testing.T) {
			if err := check(bootstraps[name]); err != nil {
				t.Errorf("%s:\n%v", name, err)
			}
		})
	}
}

// TestBrokenBootstrapsAreRejected breaks copies of the repository's
// bootstraps in one place each and expects a message that leads to it.
func TestBrokenBootstrapsAreRejected(t *testing.T) {
	bootstraps := repositoryBootstraps(t)
	cases := []struct {
		name      string
		bootstrap string
		old, new  string
		want      []string
	}{{
		name:      "unknown field",
		bootstrap: exampleBootstrap,
		old:       "stat_prefix: ingress_http",
		new:       "stat_prefix: ingress_http\n          stats_prefix: typo",
		want:      []string{"not a valid envoy.config.bootstrap.v3.Bootstrap", "stats_prefix"},
	}, {
		name:      "unregistered Any type",
		bootstrap: exampleBootstrap,
		old:       "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
		new:       "type.googleapis.com/envoy.extensions.filters.http.routr.v3.Router",
		want:      []string{"routr", "unable to resolve"},
	}, {
		name:      "PGV rule inside the golang filter's Any",
		bootstrap: exampleBootstrap,
		old:       "library_id: pubsub",
		new:       `library_id: ""`,
		want:      []string{"http_filters[1].typed_config", "golang.v3alpha.Config", "LibraryId"},
	}, {
		name:      "PGV rule inside the connection manager's Any",
		bootstrap: exampleBootstrap,
		old:       "stat_prefix: ingress_http",
		new:       `stat_prefix: ""`,
		want:      []string{"filters[0].typed_config", "HttpConnectionManager", "StatPrefix"},
	}, {
		name:      "route to a missing cluster",
		bootstrap: exampleBootstrap,
		old:       "route: {cluster: echo}",
		new:       "route: {cluster: echo-backend}",
		want:      []string{`cluster "echo-backend" does not exist`, "prefix /"},
	}, {
		name:      "plugin_name the .so does not register",
		bootstrap: exampleBootstrap,
		old:       "plugin_name: pubsub",
		new:       "plugin_name: pub-sub",
		want:      []string{`plugin_name "pub-sub"`, `registers "pubsub"`},
	}, {
		name:      "library_path not where the image has the .so",
		bootstrap: exampleBootstrap,
		old:       "library_path: /etc/envoy/envoy-pubsub.so",
		new:       "library_path: /usr/lib/envoy-pubsub.so",
		want:      []string{`library_path "/usr/lib/envoy-pubsub.so"`, LibraryPath},
	}, {
		name:      "unknown key in plugin_config",
		bootstrap: exampleBootstrap,
		old:       "max_sessions: 10000",
		new:       "max_sesions: 10000",
		want:      []string{"plugin_config", "max_sesions"},
	}, {
		name:      "plugin_config that is not a TypedStruct",
		bootstrap: exampleBootstrap,
		old:       "\"@type\": type.googleapis.com/xds.type.v3.TypedStruct\n                value:\n                  # Unix",
		new:       "\"@type\": type.googleapis.com/google.protobuf.Value\n                value:\n                  # Unix",
		want:      []string{"plugin_config", "google.protobuf.Value", "use xds.type.v3.TypedStruct"},
	}, {
		name:      "websocket upgrades missing",
		bootstrap: exampleBootstrap,
		old:       "- upgrade_type: websocket",
		new:       "- upgrade_type: CONNECT",
		want:      []string{"no enabled websocket upgrade"},
	}, {
		name:      "kafka cluster pipe is not the plugin's listener",
		bootstrap: exampleBootstrap,
		old:       "pipe: {path: /var/run/envoy-pubsub/pubsub.sock}",
		new:       "pipe: {path: /var/run/envoy-pubsub/other.sock}",
		want:      []string{`cluster "kafka": endpoint pipe /var/run/envoy-pubsub/other.sock is not the plugin's listener`},
	}, {
		name:      "kafka_clusters key without an Envoy cluster",
		bootstrap: exampleBootstrap,
		old:       "                    kafka:\n",
		new:       "                    kafka-main:\n",
		want:      []string{"kafka_clusters.kafka-main: no Envoy cluster of that name", `cluster "kafka" points at the plugin's listener`},
	}, {
		name:      "kafka-scheme cluster that is not a unix socket",
		bootstrap: exampleBootstrap,
		old:       "pipe: {path: /var/run/envoy-pubsub/pubsub.sock}",
		new:       "socket_address: {address: 127.0.0.1, port_value: 9092}",
		want:      []string{`cluster "kafka": a kafka-scheme cluster must be STATIC with pipe endpoints`},
	}, {
		name:      "kafka-scheme cluster with an HTTP2 upstream",
		bootstrap: exampleBootstrap,
		old:       "  - name: kafka\n    type: STATIC\n",
		new: "  - name: kafka\n    type: STATIC\n" +
			"    typed_extension_protocol_options:\n" +
			"      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n" +
			"        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n" +
			"        explicit_http_config: {http2_protocol_options: {}}\n",
		want: []string{`cluster "kafka": must use HTTP/1.1 upstream`},
	}, {
		name:      "kafka route on a listener without the plugin",
		bootstrap: exampleBootstrap,
		old:       "\n  clusters:\n",
		new: "\n  - name: internal\n" +
			"    address: {socket_address: {address: 127.0.0.1, port_value: 8081}}\n" +
			"    filter_chains:\n" +
			"    - filters:\n" +
			"      - name: envoy.filters.network.http_connection_manager\n" +
			"        typed_config:\n" +
			"          \"@type\": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager\n" +
			"          stat_prefix: internal_http\n" +
			"          upgrade_configs: [{upgrade_type: websocket}]\n" +
			"          http_filters: [{name: envoy.filters.http.router, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]\n" +
			"          route_config: {virtual_hosts: [{name: all, domains: [\"*\"], routes: [{match: {prefix: /}, route: {cluster: kafka}}]}]}\n" +
			"\n  clusters:\n",
		want: []string{`listener "internal"`, `routes to kafka-scheme cluster "kafka" but the pub-sub filter does not run in this connection manager`},
	}, {
		name:      "router before the plugin",
		bootstrap: exampleBootstrap,
		old:       "http_filters:\n",
		new:       "http_filters:\n          - name: early.router\n            typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}\n",
		want: []string{`"early.router": the router must be the last HTTP filter`,
			`http_filters[2] "envoy.filters.http.golang": the pub-sub filter comes after the router (http_filters[0]); Envoy never runs it`},
	}, {
		name:      "filter running on every route",
		bootstrap: exampleBootstrap,
		old:       "            disabled: true\n",
		new:       "",
		want: []string{"warning: ", `routes[3] (prefix /): the pub-sub filter runs on a route to no kafka-scheme cluster`,
			"FilterConfig, disabled: true"},
	}, {
		name:      "filter disabled by default and not enabled on a kafka route",
		bootstrap: exampleBootstrap,
		old:       "                typed_per_filter_config:\n                  envoy.filters.http.golang:\n                    \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                    config: {}\n",
		new:       "",
		want:      []string{`routes[2] (path_separated_prefix /kafka): routes to a kafka-scheme cluster but the pub-sub filter is disabled by default`},
	}, {
		name:      "filter disabled by default and disabled again on a kafka route",
		bootstrap: kubernetesBootstrap,
		old:       "\"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                    config: {}",
		new:       "\"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                    disabled: true",
		want:      []string{`routes[0] (path_separated_prefix /kafka): routes to a kafka-scheme cluster but the pub-sub filter is disabled by default`},
	}, {
		name:      "upgrade filter chain without the plugin",
		bootstrap: exampleBootstrap,
		old:       "          - upgrade_type: websocket\n",
		new:       "          - upgrade_type: websocket\n            filters: [{name: envoy.filters.http.router, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}]\n",
		want:      []string{"upgrade_configs[0].filters replaces http_filters for WebSocket upgrades but has no pub-sub golang filter"},
	}, {
		name:      "kafka route with Envoy's default route timeout",
		bootstrap: exampleBootstrap,
		old:       "match: {path_separated_prefix: /kafka}\n                route: {cluster: kafka, timeout: 0s}",
		new:       "match: {path_separated_prefix: /kafka}\n                route: {cluster: kafka}",
		want:      []string{"warning: ", "routes[2] (path_separated_prefix /kafka): a kafka route's timeout is 15s (Envoy's default); set timeout: 0s"},
	}, {
		name:      "kafka route with a route timeout",
		bootstrap: kubernetesBootstrap,
		old:       "route: {cluster: kafka, timeout: 0s}",
		new:       "route: {cluster: kafka, timeout: 60s}",
		want:      []string{"warning: ", "routes[0] (path_separated_prefix /kafka): a kafka route's timeout is 1m0s"},
	}, {
		name:      "no router",
		bootstrap: exampleBootstrap,
		old:       "          - name: envoy.filters.http.router\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n",
		new:       "",
		want:      []string{"http_filters must end with the router"},
	}, {
		name:      "bad topic pattern in a per-route config",
		bootstrap: exampleBootstrap,
		old:       `topics: ["public-*"]`,
		new:       `topics: ["public-["]`,
		want:      []string{"plugins_config.pubsub.config", `bad pattern "public-["`},
	}, {
		name:      "per-route config for another plugin",
		bootstrap: exampleBootstrap,
		old:       "                      pubsub:\n                        config:\n                          \"@type\": type.googleapis.com/xds.type.v3.TypedStruct\n                          value:\n                            topics:",
		new:       "                      pubsb:\n                        config:\n                          \"@type\": type.googleapis.com/xds.type.v3.TypedStruct\n                          value:\n                            topics:",
		want:      []string{`the .so has no plugin "pubsb"`},
	}, {
		name:      "per-route config keyed by a filter that does not exist",
		bootstrap: exampleBootstrap,
		old:       "/kafka/public}\n                route: {cluster: kafka, timeout: 0s}\n                typed_per_filter_config:\n                  envoy.filters.http.golang:",
		new:       "/kafka/public}\n                route: {cluster: kafka, timeout: 0s}\n                typed_per_filter_config:\n                  golang:",
		want:      []string{"typed_per_filter_config.golang: no HTTP filter of that name"},
	}, {
		name:      "narrowing on a route that is not kafka-scheme",
		bootstrap: exampleBootstrap,
		old:       "match: {path_separated_prefix: /kafka/public}\n                route: {cluster: kafka, timeout: 0s}",
		new:       "match: {path_separated_prefix: /kafka/public}\n                route: {cluster: echo}",
		want:      []string{"narrows sessions on a route that routes to no kafka-scheme cluster"},
	}, {
		name:      "plugin disabled on a kafka route",
		bootstrap: exampleBootstrap,
		old:       "                        config:\n                          \"@type\": type.googleapis.com/xds.type.v3.TypedStruct\n                          value:\n                            topics: [\"public-*\"]",
		new:       "                        disabled: true",
		want:      []string{`disables the plugin on a route to kafka-scheme cluster "kafka"`},
	}, {
		name:      "kafka-scheme cluster without circuit breakers",
		bootstrap: exampleBootstrap,
		old:       "    circuit_breakers:\n      thresholds:\n      - priority: DEFAULT\n        max_connections: 10000\n        max_pending_requests: 10000\n        max_requests: 10000\n",
		new:       "",
		want: []string{
			`cluster "kafka": Envoy's default max_connections 1024 is below session.max_sessions 10000`,
			`cluster "kafka": Envoy's default max_pending_requests 1024 is below session.max_sessions 10000`,
			`cluster "kafka": Envoy's default max_requests 1024 is below session.max_sessions 10000`,
		},
	}, {
		name:      "circuit breaker below max_sessions",
		bootstrap: kubernetesBootstrap,
		old:       "max_requests: 2000",
		new:       "max_requests: 1999",
		want:      []string{`cluster "kafka": circuit_breakers max_requests 1999 is below session.max_sessions 2000`},
	}, {
		name:      "per-host connection limit below max_sessions",
		bootstrap: exampleBootstrap,
		old:       "        max_requests: 10000\n",
		new:       "        max_requests: 10000\n      per_host_thresholds: [{max_connections: 100}]\n",
		want:      []string{`cluster "kafka": per_host_thresholds max_connections 100 is below session.max_sessions 10000`},
	}, {
		name:      "stream idle timeout not longer than the ping interval",
		bootstrap: exampleBootstrap,
		old:       "stream_idle_timeout: 300s",
		new:       "stream_idle_timeout: 30s",
		want:      []string{`listener "ingress"`, "stream_idle_timeout 30s is not longer than session.ping_interval 30s"},
	}, {
		name:      "ping interval above the stream idle timeout",
		bootstrap: kubernetesBootstrap,
		old:       "ping_interval: 30s",
		new:       "ping_interval: 301s",
		want:      []string{"stream_idle_timeout 5m0s is not longer than session.ping_interval 5m1s"},
	}, {
		name:      "kafka route idle timeout not longer than the ping interval",
		bootstrap: exampleBootstrap,
		old:       "match: {path_separated_prefix: /kafka}\n                route: {cluster: kafka, timeout: 0s}",
		new:       "match: {path_separated_prefix: /kafka}\n                route: {cluster: kafka, timeout: 0s, idle_timeout: 20s}",
		want:      []string{"routes[2] (path_separated_prefix /kafka): idle_timeout 20s is not longer than session.ping_interval 30s"},
	}, {
		name:      "upstream idle timeout not longer than the ping interval",
		bootstrap: exampleBootstrap,
		old:       "  - name: kafka\n    type: STATIC\n",
		new: "  - name: kafka\n    type: STATIC\n" +
			"    typed_extension_protocol_options:\n" +
			"      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n" +
			"        \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n" +
			"        common_http_protocol_options: {idle_timeout: 10s}\n" +
			"        explicit_http_config: {http_protocol_options: {}}\n",
		want: []string{`cluster "kafka": upstream idle_timeout 10s is not longer than session.ping_interval 30s`},
	}, {
		name:      "route that takes its cluster from a client header",
		bootstrap: exampleBootstrap,
		old:       "route: {cluster: echo}",
		new:       "route: {cluster_header: x-backend}",
		want:      []string{"routes[3] (prefix /): takes its cluster from a request header (cluster_header)"},
	}, {
		name:      "weighted cluster taken from a client header",
		bootstrap: kubernetesBootstrap,
		old:       "route: {cluster: app}",
		new:       "route: {weighted_clusters: {clusters: [{name: app, weight: 1}, {cluster_header: x-backend, weight: 1}]}}",
		want:      []string{"takes its cluster from a request header (cluster_header)"},
	}, {
		name:      "password_secret not declared on the filter",
		bootstrap: kubernetesBootstrap,
		old:       "generic_secrets:\n    - name: kafka-password",
		new:       "generic_secrets:\n    - name: kafka-pass",
		want:      []string{`password_secret "kafka-password" is not listed in the filter's generic_secrets`, `"kafka-pass": no static generic_secret`},
	}, {
		name:      "OIDC client_secret_secret not declared on the filter",
		bootstrap: kubernetesBootstrap,
		old:       "mechanism: SCRAM-SHA-512\n              username: orders-app\n              password_secret: kafka-password",
		new:       "mechanism: OAUTHBEARER\n              token_endpoint: https://id.example.com/token\n              client_id: orders-app\n              client_secret_secret: kafka-oidc",
		want:      []string{`client_secret_secret "kafka-oidc" is not listed in the filter's generic_secrets`},
	}, {
		name:      "SASL without a password source",
		bootstrap: kubernetesBootstrap,
		old:       "password_secret: kafka-password",
		new:       "mechanism_typo: x",
		want:      []string{"plugin_config", "mechanism_typo"},
	}, {
		name:      "discovered config file missing",
		bootstrap: kubernetesBootstrap,
		old:       "path: /etc/envoy-config/pubsub-filter.yaml",
		new:       "path: /etc/envoy-config/filter.yaml",
		want:      []string{`HTTP filter "envoy.filters.http.golang": config_discovery /etc/envoy-config/filter.yaml: filter.yaml: not found beside the bootstrap`},
	}, {
		name:      "discovered file that is no DiscoveryResponse",
		bootstrap: kubernetesBootstrap,
		old:       "\nresources:\n",
		new:       "\nresourcez:\n",
		want:      []string{"config_discovery /etc/envoy-config/pubsub-filter.yaml: not a DiscoveryResponse", "resourcez"},
	}, {
		name:      "discovered resource named unlike the filter",
		bootstrap: kubernetesBootstrap,
		old:       "\n  name: envoy.filters.http.golang\n",
		new:       "\n  name: golang\n",
		want:      []string{`resources[0] is named "golang"; Envoy takes only the resource named like the filter`},
	}, {
		name:      "discovered config of a type the filter does not take",
		bootstrap: kubernetesBootstrap,
		old:       "type_urls: [type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.Config]",
		new:       "type_urls: [type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication]",
		want:      []string{"resources[0].typed_config is type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.Config, which type_urls"},
	}, {
		name:      "PGV rule inside the discovered config",
		bootstrap: kubernetesBootstrap,
		old:       "library_id: pubsub",
		new:       `library_id: ""`,
		want:      []string{"config_discovery /etc/envoy-config/pubsub-filter.yaml: resources[0]", "golang.v3alpha.Config", "LibraryId"},
	}, {
		name:      "drain time in a static listener",
		bootstrap: exampleBootstrap,
		old:       "pong_timeout: 15s",
		new:       "pong_timeout: 15s\n                    drain_time: 600s",
		want:      []string{"warning: ", "session.drain_time 10m0s: a static listener changes only by a restart"},
	}, {
		name:      "drain time in a discovered config",
		bootstrap: kubernetesBootstrap,
		old:       "ping_interval: 30s",
		new:       "ping_interval: 30s\n          drain_time: 20s",
		want:      []string{"warning: ", "(config_discovery /etc/envoy-config/pubsub-filter.yaml): session.drain_time 20s: a filter config from config_discovery is replaced without a drain"},
	}, {
		name:      "default config the plugin rejects",
		bootstrap: kubernetesBootstrap,
		old:       "              type_urls:",
		new: "              default_config:\n" +
			"                \"@type\": type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.Config\n" +
			"                library_id: pubsub\n" +
			"                library_path: /etc/envoy/envoy-pubsub.so\n" +
			"                plugin_name: pubsub\n" +
			"                plugin_config: {\"@type\": type.googleapis.com/xds.type.v3.TypedStruct, value: {sesion: {}}}\n" +
			"              type_urls:",
		want: []string{`HTTP filter "envoy.filters.http.golang": config_discovery: default_config.plugin_config`, `unknown key "sesion"`},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := string(bootstraps[tc.bootstrap])
			if src == "" {
				t.Fatalf("bootstrap %s not found", tc.bootstrap)
			}
			if n := strings.Count(src, tc.old); n != 1 {
				t.Fatalf("%q occurs %d times in %s; the case must break exactly one place", tc.old, n, tc.bootstrap)
			}
			err := check([]byte(strings.Replace(src, tc.old, tc.new, 1)))
			if err == nil {
				t.Fatal("accepted")
			}
			t.Logf("rejected with:\n%v", err)
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not mention %q:\n%v", want, err)
				}
			}
		})
	}
}

// TestIdleTimeoutDefaults pins Envoy's defaults the checker assumes: an
// absent stream_idle_timeout is 300s, which outlives the default 30s ping
// interval but not a longer one, and a zero timeout is off.
func TestIdleTimeoutDefaults(t *testing.T) {
	src := string(repositoryBootstraps(t)[exampleBootstrap])
	withoutTimeout := strings.Replace(src, "stream_idle_timeout: 300s\n", "", 1)
	if withoutTimeout == src {
		t.Fatal("the example sets no stream_idle_timeout")
	}
	if err := check([]byte(strings.Replace(withoutTimeout, "ping_interval: 30s", "max_in_flight: 16", 1))); err != nil {
		t.Errorf("default stream_idle_timeout with the default ping interval: %v", err)
	}
	err := check([]byte(strings.Replace(withoutTimeout, "ping_interval: 30s", "ping_interval: 5m", 1)))
	if err == nil || !strings.Contains(err.Error(), "stream_idle_timeout 5m0s is not longer than session.ping_interval 5m0s") {
		t.Errorf("default stream_idle_timeout with a 5m ping interval: %v", err)
	}
	if err := check([]byte(strings.Replace(src, "stream_idle_timeout: 300s", "stream_idle_timeout: 0s", 1))); err != nil {
		t.Errorf("disabled stream_idle_timeout: %v", err)
	}
}

func TestFindLooksIntoConfigMapsAndMultiDocumentFiles(t *testing.T) {
	bootstrap := "static_resources:\n  clusters: []\n"
	root := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proxy.yaml", bootstrap)
	write("k8s/all.yml", "kind: Service\nmetadata: {name: s}\n---\n"+
		"kind: ConfigMap\nmetadata: {name: proxy}\ndata:\n  notes.txt: hello\n  boot.yaml: |\n    static_resources:\n      clusters: []\n")
	write("compose.yaml", "services:\n  kafka: {image: apache/kafka:3.9.1}\n")
	write(".hidden/envoy.yaml", "not: checked\n")

	sources, err := Find(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sources {
		names = append(names, s.Name)
	}
	want := []string{"k8s/all.yml#ConfigMap/proxy/boot.yaml", "proxy.yaml"}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("found %v, want %v", names, want)
	}
	if string(sources[1].YAML) != bootstrap {
		t.Errorf("proxy.yaml text = %q", sources[1].YAML)
	}

	write("deploy/envoy-sidecar.yaml", "kind: Deployment\nmetadata: {name: d}\n")
	if _, err := Find(root); err == nil || !strings.Contains(err.Error(), "envoy-sidecar.yaml") {
		t.Fatalf("a file named envoy without a bootstrap must be reported, got %v", err)
	}
}

// TestDeploymentsProvideWhatBootstrapsExpect ties the bootstraps to the files
// that run them: the image has the .so at library_path and a directory for
// the session socket, and the Kubernetes Deployment mounts one there.
func TestDeploymentsProvideWhatBootstrapsExpect(t *testing.T) {
	root := moduleRoot(t)
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	socketDir := func(bootstrap string) string {
		t.Helper()
		m := regexp.MustCompile(`(?m)^\s*listener: (\S+)`).FindStringSubmatch(bootstrap)
		if m == nil {
			t.Fatal("no plugin listener in the bootstrap")
		}
		return path.Dir(m[1])
	}
	bootstraps := repositoryBootstraps(t)

	dockerfile := read("Dockerfile")
	if !regexp.MustCompile(`(?m)^COPY --from=\S+ \S+ ` + regexp.QuoteMeta(LibraryPath) + `$`).MatchString(dockerfile) {
		t.Errorf("Dockerfile does not copy the .so to %s", LibraryPath)
	}
	if !regexp.MustCompile(`(?m)^COPY envoy\.yaml /etc/envoy/envoy\.yaml$`).MatchString(dockerfile) {
		t.Error("Dockerfile does not install envoy.yaml as /etc/envoy/envoy.yaml")
	}
	if dir := socketDir(string(bootstraps[exampleBootstrap])); !strings.Contains(dockerfile, "chown envoy:envoy "+dir+"\n") {
		t.Errorf("Dockerfile does not make %s writable for envoy", dir)
	}

	var deployment struct {
		Spec struct {
			Template struct {
				Spec struct {
					TerminationGracePeriodSeconds int `json:"terminationGracePeriodSeconds"`
					Containers                    []struct {
						Name         string
						VolumeMounts []struct{ MountPath string } `json:"volumeMounts"`
						Lifecycle    struct {
							PreStop struct {
								Exec struct{ Command []string }
							} `json:"preStop"`
						}
					}
				}
			}
		}
	}
	if err := yaml.Unmarshal([]byte(read("deploy/kubernetes/deployment.yaml")), &deployment); err != nil {
		t.Fatal(err)
	}
	dir := socketDir(string(bootstraps[kubernetesBootstrap]))
	b := parseBootstrap(t, bootstraps[kubernetesBootstrap])
	adminPort := b.GetAdmin().GetAddress().GetSocketAddress().GetPortValue()
	for _, c := range deployment.Spec.Template.Spec.Containers {
		if c.Name != "envoy" {
			continue
		}
		// The preStop hook drains Envoy's listeners through the admin
		// interface, then waits within the grace period.
		hook := strings.Join(c.Lifecycle.PreStop.Exec.Command, " ")
		if !strings.Contains(hook, fmt.Sprintf("/dev/tcp/127.0.0.1/%d", adminPort)) || !strings.Contains(hook, "POST /drain_listeners?graceful ") {
			t.Errorf("the envoy container's preStop hook does not POST /drain_listeners?graceful to the admin port %d: %q", adminPort, hook)
		}
		if m := regexp.MustCompile(`sleep (\d+)`).FindStringSubmatch(hook); m == nil || atoi(t, m[1]) >= deployment.Spec.Template.Spec.TerminationGracePeriodSeconds {
			t.Errorf("the preStop hook's sleep must end within terminationGracePeriodSeconds (%d): %q", deployment.Spec.Template.Spec.TerminationGracePeriodSeconds, hook)
		}
		for _, m := range c.VolumeMounts {
			if m.MountPath == dir {
				return
			}
		}
	}
	t.Errorf("the envoy container of deploy/kubernetes/deployment.yaml mounts no volume at %s", dir)
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// The other way to keep the filter off ordinary routes: enabled by default
// and disabled per route. Both pass; warnings are reported as such.
func TestPerRouteDisableIsAnAlternative(t *testing.T) {
	src := string(repositoryBootstraps(t)[kubernetesBootstrap])
	perRoute := strings.Replace(src, "            disabled: true\n", "", 1)
	perRoute = strings.Replace(perRoute, "route: {cluster: app}",
		"route: {cluster: app}\n                typed_per_filter_config: {envoy.filters.http.golang: {\"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig, disabled: true}}", 1)
	if perRoute == src {
		t.Fatal("the Kubernetes bootstrap changed; update this test")
	}
	if err := check([]byte(perRoute)); err != nil {
		t.Errorf("filter disabled on the app route only: %v", err)
	}
	everywhere := strings.Replace(src, "            disabled: true\n", "", 1)
	problems := problemsOf([]byte(everywhere))
	if len(problems) != 1 || !IsWarning(problems[0]) || IsWarning(errors.New("x")) {
		t.Errorf("filter on every route: %v, want exactly one warning", problems)
	}
}

// kubernetesFilterFile is the ConfigMap key holding the golang filter's
// config, which the Kubernetes bootstrap discovers (config_discovery).
const kubernetesFilterFile = "pubsub-filter.yaml"

// inlined returns the Kubernetes bootstrap with the golang filter's
// discovered config inline in http_filters instead.
func inlined(t *testing.T, text string) string {
	t.Helper()
	bootstrap, file, ok := strings.Cut(text, "\n"+fileMarker+kubernetesFilterFile+"\n")
	if !ok {
		t.Fatalf("the Kubernetes bootstrap reads no %s", kubernetesFilterFile)
	}
	_, typedConfig, ok := strings.Cut(file, "\n  typed_config:\n")
	if !ok {
		t.Fatalf("%s has no typed_config", kubernetesFilterFile)
	}
	start := strings.Index(bootstrap, "            config_discovery:\n")
	end := strings.Index(bootstrap, "golang.v3alpha.Config]\n")
	if start < 0 || end < start {
		t.Fatal("the Kubernetes bootstrap's golang filter has no config_discovery")
	}
	var inline strings.Builder
	inline.WriteString("            typed_config:\n")
	for _, line := range strings.Split(strings.TrimRight(typedConfig, "\n"), "\n") {
		inline.WriteString("          " + line + "\n")
	}
	return bootstrap[:start] + inline.String() + bootstrap[end+len("golang.v3alpha.Config]\n"):]
}

// TestInlineAndDiscoveredConfigsAreCheckedAlike breaks the Kubernetes
// bootstrap, whose golang filter config is discovered, and the same
// bootstrap with that config inline, in the same place each, and expects
// the same problems (but for the discovered file's name).
func TestInlineAndDiscoveredConfigsAreCheckedAlike(t *testing.T) {
	discovered := string(repositoryBootstraps(t)[kubernetesBootstrap])
	inline := inlined(t, discovered)
	if strings.Contains(inline, fileMarker) || strings.Contains(inline, "config_discovery") {
		t.Fatal("the inline form still discovers its config")
	}
	moveJWTAuthnAfterThePlugin := func(src string) string {
		lineOf := func(s string) int { return strings.LastIndexByte(src[:strings.Index(src, s)], '\n') + 1 }
		jwt, golang, router := lineOf("- name: envoy.filters.http.jwt_authn"), lineOf("- name: envoy.filters.http.golang"), lineOf("- name: envoy.filters.http.router")
		return src[:jwt] + src[golang:router] + src[jwt:golang] + src[router:]
	}
	replace := func(old, new string) func(string) string {
		return func(src string) string {
			if strings.Count(src, old) != 1 {
				t.Fatalf("%q does not occur exactly once", old)
			}
			return strings.Replace(src, old, new, 1)
		}
	}
	routerFilter := `{name: envoy.filters.http.router, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}`
	for _, c := range []struct {
		name string
		edit func(string) string
		want string
	}{
		{"as shipped", func(s string) string { return s }, ""},
		{"unknown key in plugin_config", replace("password_secret: kafka-password", "mechanism_typo: x"), `unknown key "mechanism_typo"`},
		{"ping interval above the stream idle timeout", replace("ping_interval: 30s", "ping_interval: 301s"), "stream_idle_timeout 5m0s is not longer than session.ping_interval 5m1s"},
		{"identity without jwt_authn's payload", replace("payload_in_metadata: jwt_payload", "payload_in_metadata: claims"), `no jwt_authn provider sets payload_in_metadata "jwt_payload"`},
		{"jwt_authn after the plugin", moveJWTAuthnAfterThePlugin, "jwt_authn runs after the pub-sub filter"},
		{"router before the plugin", replace("http_filters:\n", "http_filters:\n          - "+routerFilter+"\n"), "the pub-sub filter comes after the router"},
		{"upgrade filters without the plugin", replace("- upgrade_type: websocket\n", "- upgrade_type: websocket\n            filters: ["+routerFilter+"]\n"), "upgrade_configs[0].filters replaces http_filters for WebSocket upgrades but has no pub-sub golang filter"},
		{"disabled on the kafka route", replace("config: {}", "disabled: true"), "disabled by default (http_filters"},
		{"enabled on every route", replace("            disabled: true\n", ""), "warning: "},
		{"token in the access log", replace("%PATH(NQ)%", "%PATH%"), `access_log[0] "envoy.access_loggers.stdout": the format has %PATH%`},
	} {
		t.Run(c.name, func(t *testing.T) {
			fromFile := " (config_discovery /etc/envoy-config/" + kubernetesFilterFile + ")"
			var got [2]string
			for i, text := range []string{discovered, inline} {
				got[i] = strings.ReplaceAll(fmt.Sprint(problemsOf([]byte(c.edit(text)))), fromFile, "")
			}
			if got[0] != got[1] {
				t.Fatalf("discovered and inline configs check differently:\ndiscovered: %s\ninline:     %s", got[0], got[1])
			}
			if c.want == "" && got[0] != "[]" || !strings.Contains(got[0], c.want) {
				t.Fatalf("problems %s, want %q", got[0], c.want)
			}
		})
	}
}

// A golang filter configured from a management server is refused with a
// message that says why: its plugin_config cannot be checked here.
func TestConfigFromAManagementServerIsRefusedClearly(t *testing.T) {
	src := string(repositoryBootstraps(t)[kubernetesBootstrap])
	old := "path_config_source:\n"
	start := strings.Index(src, old)
	end := start + strings.Index(src[start:], "\n              type_urls:")
	if start < 0 || end < start {
		t.Fatal("the Kubernetes bootstrap has no path_config_source")
	}
	err := check([]byte(src[:start] + "ads: {}" + src[end:]))
	if err == nil || !strings.Contains(err.Error(), `HTTP filter "envoy.filters.http.golang": config_discovery: the config comes from a management server`) {
		t.Fatalf("got %v", err)
	}
}
