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

// repositoryBootstraps returns the bootstraps of the repository by name.
func repositoryBootstraps(t *testing.T) map[string][]byte {
	t.Helper()
	sources, err := Find(moduleRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string][]byte{}
	for _, s := range sources {
		byName[s.Name] = s.YAML
	}
	return byName
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
			if err := Check(bootstraps[name]); err != nil {
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
		want:      []string{"http_filters[0].typed_config", "golang.v3alpha.Config", "LibraryId"},
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
			`http_filters[1] "envoy.filters.http.golang": the pub-sub filter comes after the router (http_filters[0]); Envoy never runs it`},
	}, {
		name:      "filter running on every route",
		bootstrap: exampleBootstrap,
		old:       "            disabled: true\n",
		new:       "",
		want: []string{"warning: ", `routes[2] (prefix /): the pub-sub filter runs on a route to no kafka-scheme cluster`,
			"FilterConfig, disabled: true"},
	}, {
		name:      "filter disabled by default and not enabled on a kafka route",
		bootstrap: exampleBootstrap,
		old:       "                typed_per_filter_config:\n                  envoy.filters.http.golang:\n                    \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig\n                    config: {}\n",
		new:       "",
		want:      []string{`routes[1] (path_separated_prefix /kafka): routes to a kafka-scheme cluster but the pub-sub filter is disabled by default`},
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
		want:      []string{"warning: ", "routes[1] (path_separated_prefix /kafka): a kafka route's timeout is 15s (Envoy's default); set timeout: 0s"},
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
		old:       "                      pubsub:\n                        config:",
		new:       "                      pubsb:\n                        config:",
		want:      []string{`the .so has no plugin "pubsb"`},
	}, {
		name:      "per-route config keyed by a filter that does not exist",
		bootstrap: exampleBootstrap,
		old:       "                  envoy.filters.http.golang:\n                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.ConfigsPerRoute",
		new:       "                  golang:\n                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.ConfigsPerRoute",
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
		want:      []string{"routes[1] (path_separated_prefix /kafka): idle_timeout 20s is not longer than session.ping_interval 30s"},
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
		want:      []string{"routes[2] (prefix /): takes its cluster from a request header (cluster_header)"},
	}, {
		name:      "weighted cluster taken from a client header",
		bootstrap: kubernetesBootstrap,
		old:       "route: {cluster: app}",
		new:       "route: {weighted_clusters: {clusters: [{name: app, weight: 1}, {cluster_header: x-backend, weight: 1}]}}",
		want:      []string{"takes its cluster from a request header (cluster_header)"},
	}, {
		name:      "password_secret not declared on the filter",
		bootstrap: kubernetesBootstrap,
		old:       "generic_secrets:\n              - name: kafka-password",
		new:       "generic_secrets:\n              - name: kafka-pass",
		want:      []string{`password_secret "kafka-password" is not listed in the filter's generic_secrets`, `"kafka-pass": no static generic_secret`},
	}, {
		name:      "SASL without a password source",
		bootstrap: kubernetesBootstrap,
		old:       "password_secret: kafka-password",
		new:       "mechanism_typo: x",
		want:      []string{"plugin_config", "mechanism_typo"},
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
			err := Check([]byte(strings.Replace(src, tc.old, tc.new, 1)))
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
	if err := Check([]byte(strings.Replace(withoutTimeout, "ping_interval: 30s", "max_in_flight: 16", 1))); err != nil {
		t.Errorf("default stream_idle_timeout with the default ping interval: %v", err)
	}
	err := Check([]byte(strings.Replace(withoutTimeout, "ping_interval: 30s", "ping_interval: 5m", 1)))
	if err == nil || !strings.Contains(err.Error(), "stream_idle_timeout 5m0s is not longer than session.ping_interval 5m0s") {
		t.Errorf("default stream_idle_timeout with a 5m ping interval: %v", err)
	}
	if err := Check([]byte(strings.Replace(src, "stream_idle_timeout: 300s", "stream_idle_timeout: 0s", 1))); err != nil {
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
	b, err := ParseBootstrap(bootstraps[kubernetesBootstrap])
	if err != nil {
		t.Fatal(err)
	}
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
	if err := Check([]byte(perRoute)); err != nil {
		t.Errorf("filter disabled on the app route only: %v", err)
	}
	everywhere := strings.Replace(src, "            disabled: true\n", "", 1)
	problems := Problems([]byte(everywhere), Options{})
	if len(problems) != 1 || !IsWarning(problems[0]) || IsWarning(errors.New("x")) {
		t.Errorf("filter on every route: %v, want exactly one warning", problems)
	}
}

// A golang filter configured through extension config discovery is refused
// with a message that says why: its plugin_config cannot be checked here.
func TestDiscoveredFilterConfigIsRefusedClearly(t *testing.T) {
	var doc map[string]any
	if err := yaml.Unmarshal(repositoryBootstraps(t)[exampleBootstrap], &doc); err != nil {
		t.Fatal(err)
	}
	hcm := doc["static_resources"].(map[string]any)["listeners"].([]any)[0].(map[string]any)["filter_chains"].([]any)[0].(map[string]any)["filters"].([]any)[0].(map[string]any)["typed_config"].(map[string]any)
	golang := hcm["http_filters"].([]any)[0].(map[string]any)
	delete(golang, "typed_config")
	golang["config_discovery"] = map[string]any{
		"config_source": map[string]any{"path_config_source": map[string]any{"path": "/etc/envoy/pubsub-filter.yaml"}},
		"type_urls":     []any{"type.googleapis.com/envoy.extensions.filters.http.golang.v3alpha.Config"},
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	err = Check(b)
	if err == nil || !strings.Contains(err.Error(), `http_filters[0] "envoy.filters.http.golang": the golang filter's config comes from config_discovery`) {
		t.Fatalf("got %v", err)
	}
}
