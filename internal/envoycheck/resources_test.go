package envoycheck

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/http/golang/v3alpha"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"sigs.k8s.io/yaml"

	"github.com/envoy-pubsub/gateway/filter"
)

// Allowances the Kubernetes example sizes its memory with (see
// docs/envoy-deployment.md, "CPU and memory").
const (
	// goPerSession covers a session's goroutine, socket, handler state and
	// request frames in flight: an idle session measures about 10 KiB of
	// RSS (BENCHMARKS.md, idle sessions); replies count in
	// limits.max_memory_bytes.
	goPerSession = 64 << 10
	// goRuntime is the Go runtime and the library's own code and data.
	goRuntime = 32 << 20
	// envoyBase is Envoy's own heap without connections.
	envoyBase = 64 << 20
	// envoyDefaultBufferLimit is per_connection_buffer_limit_bytes when
	// unset (listener.proto:244-246, cluster.proto:885-887 in v1.39.1).
	envoyDefaultBufferLimit = 1 << 20
)

// TestKubernetesResourcesHoldWhatTheConfigAllows recomputes the Envoy
// container's memory from the bootstrap in the ConfigMap: GOMEMLIMIT holds
// limits.max_memory_bytes, every kafka cluster's cache_bytes and
// session.max_sessions sessions; the memory limit holds GOMEMLIMIT, the
// read and write buffers of each session's two connections (downstream,
// and the session socket's) and Envoy itself; the CPU request, Envoy's
// --concurrency and GOMAXPROCS agree.
func TestKubernetesResourcesHoldWhatTheConfigAllows(t *testing.T) {
	root := moduleRoot(t)
	text := repositoryBootstraps(t)[kubernetesBootstrap]
	b := parseBootstrap(t, text)
	_, opts := splitFiles(string(text))
	listener := b.GetStaticResources().GetListeners()[0]
	downstreamLimit := uint64(envoyDefaultBufferLimit)
	if v := listener.GetPerConnectionBufferLimitBytes(); v != nil {
		downstreamLimit = uint64(v.GetValue())
	}
	var plugin *golangv3alpha.Config
	for _, cm := range (&wiring{readDiscovered: opts.ReadDiscovered}).connectionManagers(b) {
		for _, hf := range cm.hcm.GetHttpFilters() {
			if isPubSubFilter(hf) {
				plugin = &golangv3alpha.Config{}
				if err := hf.GetTypedConfig().UnmarshalTo(plugin); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if plugin == nil {
		t.Fatal("no pub-sub filter in the Kubernetes bootstrap")
	}
	doc, err := filter.ParseFilterConfig(plugin.GetPluginConfig())
	if err != nil {
		t.Fatal(err)
	}
	upstreamLimit := uint64(0)
	for _, c := range b.GetStaticResources().GetClusters() {
		if doc.KafkaClusters[c.GetName()] == nil {
			continue
		}
		limit := uint64(envoyDefaultBufferLimit)
		if v := c.GetPerConnectionBufferLimitBytes(); v != nil {
			limit = uint64(v.GetValue())
		}
		upstreamLimit = max(upstreamLimit, limit)
	}
	sessions := uint64(doc.Session.MaxSessions)
	goNeeds := uint64(doc.Limits.MaxMemoryBytes) + sessions*goPerSession + goRuntime
	for _, kc := range doc.KafkaClusters {
		goNeeds += uint64(kc.CacheBytes)
	}
	envoyBuffers := sessions * 2 * (downstreamLimit + upstreamLimit)

	var deployment struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Name      string
						Args      []string
						Env       []struct{ Name, Value string }
						Resources struct {
							Requests map[string]string
							Limits   map[string]string
						}
					}
				}
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join(root, "deploy", "kubernetes", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &deployment); err != nil {
		t.Fatal(err)
	}
	for _, c := range deployment.Spec.Template.Spec.Containers {
		if c.Name != "envoy" {
			continue
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		goLimit := quantity(t, env["GOMEMLIMIT"])
		if goLimit < goNeeds {
			t.Errorf("GOMEMLIMIT %s = %d B is below what the config lets Go hold: %d B", env["GOMEMLIMIT"], goLimit, goNeeds)
		}
		need := goLimit + envoyBuffers + envoyBase
		if limit := quantity(t, c.Resources.Limits["memory"]); limit < need {
			t.Errorf("memory limit %s = %d B is below GOMEMLIMIT + Envoy's connection buffers + Envoy: %d B (buffers %d B)", c.Resources.Limits["memory"], limit, need, envoyBuffers)
		}
		i := slices.Index(c.Args, "--concurrency")
		if i < 0 || i+1 >= len(c.Args) {
			t.Fatalf("the envoy container does not set --concurrency: %v", c.Args)
		}
		if cpu := c.Resources.Requests["cpu"]; c.Args[i+1] != cpu || env["GOMAXPROCS"] != cpu {
			t.Errorf("--concurrency %s, GOMAXPROCS %q and the CPU request %q must agree", c.Args[i+1], env["GOMAXPROCS"], cpu)
		}
		t.Logf("Go needs %d MiB (GOMEMLIMIT %d MiB), Envoy buffers %d MiB, memory limit %s",
			goNeeds>>20, goLimit>>20, envoyBuffers>>20, c.Resources.Limits["memory"])
		return
	}
	t.Fatal("no envoy container in deployment.yaml")
}

// TestImageSetsConcurrencyAndGOMAXPROCS: the image runs Envoy with as many
// workers as Go has processors, both set, not left to the node's CPU count.
func TestImageSetsConcurrencyAndGOMAXPROCS(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(moduleRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var procs, concurrency string
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "ENV GOMAXPROCS="); ok {
			procs = strings.TrimSpace(v)
		}
		if strings.HasPrefix(line, "CMD ") {
			if _, after, ok := strings.Cut(line, `"--concurrency", "`); ok {
				concurrency, _, _ = strings.Cut(after, `"`)
			}
		}
	}
	if procs == "" || procs != concurrency {
		t.Errorf("Dockerfile: ENV GOMAXPROCS=%q and CMD --concurrency %q must be set and equal", procs, concurrency)
	}
}

// quantity parses a Kubernetes or Go memory quantity (704Mi, 1Gi, 349MiB)
// or a plain number of bytes.
func quantity(t *testing.T, s string) uint64 {
	t.Helper()
	for suffix, unit := range map[string]uint64{"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if v, ok := strings.CutSuffix(s, suffix); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("quantity %q: %v", s, err)
			}
			return n * unit
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("quantity %q: %v", s, err)
	}
	return n
}

// TestKubernetesDiscoveredConfigIsMountedAndWatched: the golang filter's
// discovered config is the ConfigMap key of its file name, in the directory
// the Deployment mounts the ConfigMap at (where Envoy's -c bootstrap is), and
// Envoy watches that directory, where Kubernetes swaps a symlink on every
// ConfigMap update (a watch on the file alone would miss it).
func TestKubernetesDiscoveredConfigIsMountedAndWatched(t *testing.T) {
	b := parseBootstrap(t, repositoryBootstraps(t)[kubernetesBootstrap])
	var source *corev3.PathConfigSource
	for _, cm := range (&wiring{}).connectionManagers(b) {
		for _, hf := range cm.hcm.GetHttpFilters() {
			if hf.GetName() == "envoy.filters.http.golang" {
				source = hf.GetConfigDiscovery().GetConfigSource().GetPathConfigSource()
			}
		}
	}
	if source == nil {
		t.Fatal("the Kubernetes bootstrap's golang filter has no path_config_source")
	}
	if path.Base(source.GetPath()) != kubernetesFilterFile {
		t.Errorf("path_config_source %s is not the ConfigMap key %s", source.GetPath(), kubernetesFilterFile)
	}
	dir := path.Dir(source.GetPath())
	if got := source.GetWatchedDirectory().GetPath(); got != dir {
		t.Errorf("watched_directory %q, want the ConfigMap's mount %s", got, dir)
	}
	var deployment struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Name         string
						Args         []string
						VolumeMounts []struct{ Name, MountPath string } `json:"volumeMounts"`
					}
					Volumes []struct {
						Name      string
						ConfigMap struct{ Name string } `json:"configMap"`
					}
				}
			}
		}
	}
	raw, err := os.ReadFile(filepath.Join(moduleRoot(t), "deploy", "kubernetes", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &deployment); err != nil {
		t.Fatal(err)
	}
	spec := deployment.Spec.Template.Spec
	for _, c := range spec.Containers {
		if c.Name != "envoy" {
			continue
		}
		if i := slices.Index(c.Args, "-c"); i < 0 || i+1 >= len(c.Args) || path.Dir(c.Args[i+1]) != dir {
			t.Errorf("envoy's -c bootstrap (%v) is not in %s, beside the discovered config", c.Args, dir)
		}
		for _, m := range c.VolumeMounts {
			for _, v := range spec.Volumes {
				if m.MountPath == dir && v.Name == m.Name && v.ConfigMap.Name == "envoy-pubsub" {
					return
				}
			}
		}
	}
	t.Errorf("the envoy container mounts no ConfigMap envoy-pubsub at %s", dir)
}
