package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestRepositoryBootstrapsPass(t *testing.T) {
	var out, errOut bytes.Buffer
	files := []string{filepath.Join("..", "..", "envoy.yaml"), filepath.Join("..", "..", "deploy", "kubernetes", "envoy-configmap.yaml")}
	if status := run(files, &out, &errOut); status != 0 {
		t.Fatalf("status %d, output:\n%s%s", status, out.String(), errOut.String())
	}
	for _, f := range files {
		if !strings.Contains(out.String(), f+": ok\n") {
			t.Errorf("no ok line for %s:\n%s", f, out.String())
		}
	}
}

func TestProblemsArePrintedOneALineWithStatus1(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(src), "max_requests: 10000", "max_requests: 10", 1)
	broken = strings.Replace(broken, "stream_idle_timeout: 300s", "stream_idle_timeout: 10s", 1)
	file := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(file, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if status := run([]string{file}, &out, &errOut); status != 1 {
		t.Fatalf("status %d, want 1; output:\n%s", status, out.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want one per problem (2):\n%s", len(lines), out.String())
	}
	for i, want := range []string{"max_requests 10 is below session.max_sessions 10000", "stream_idle_timeout 10s is not longer than session.ping_interval 30s"} {
		if !strings.HasPrefix(lines[i], file+": ") || !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %q, want %s: ...%s...", i, lines[i], file, want)
		}
	}
}

func TestUsageAndUnreadableFiles(t *testing.T) {
	var out, errOut bytes.Buffer
	if status := run(nil, &out, &errOut); status != 2 || !strings.Contains(errOut.String(), "usage: envoy-pubsub-check") {
		t.Errorf("no arguments: status %d, stderr %q", status, errOut.String())
	}
	out.Reset()
	missing := filepath.Join(t.TempDir(), "absent.yaml")
	if status := run([]string{missing}, &out, &errOut); status != 1 || !strings.Contains(out.String(), "absent.yaml") {
		t.Errorf("missing file: status %d, output %q", status, out.String())
	}
	out.Reset()
	notEnvoy := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(notEnvoy, []byte("services: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if status := run([]string{notEnvoy}, &out, &errOut); status != 1 || !strings.Contains(out.String(), "no Envoy bootstrap") {
		t.Errorf("file without a bootstrap: status %d, output %q", status, out.String())
	}
}

func TestWarningsArePrintedWithoutFailing(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	warned := strings.Replace(string(src), "route: {cluster: kafka, timeout: 0s}\n                typed_per_filter_config:\n                  envoy.filters.http.golang:\n                    \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig",
		"route: {cluster: kafka}\n                typed_per_filter_config:\n                  envoy.filters.http.golang:\n                    \"@type\": type.googleapis.com/envoy.config.route.v3.FilterConfig", 1)
	if warned == string(src) {
		t.Fatal("envoy.yaml changed; update this test")
	}
	file := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(file, []byte(warned), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if status := run([]string{file}, &out, &errOut); status != 0 {
		t.Fatalf("status %d, want 0 for warnings only; output:\n%s", status, out.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], file+": warning: ") || !strings.Contains(lines[0], "timeout is 15s") || lines[1] != file+": ok" {
		t.Errorf("output:\n%s\nwant the warning, then the ok line", out.String())
	}
}

// A bootstrap file whose golang filter config is discovered from a file
// (path_config_source) is checked with the file of that name beside it.
func TestDiscoveredConfigIsReadBesideTheBootstrap(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "kubernetes", "envoy-configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct{ Data map[string]string }
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bootstrap := filepath.Join(dir, "envoy.yaml")
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("envoy.yaml", cm.Data["envoy.yaml"])
	write("pubsub-filter.yaml", cm.Data["pubsub-filter.yaml"])
	var out, errOut bytes.Buffer
	if status := run([]string{bootstrap}, &out, &errOut); status != 0 {
		t.Fatalf("status %d, output:\n%s%s", status, out.String(), errOut.String())
	}

	write("pubsub-filter.yaml", strings.Replace(cm.Data["pubsub-filter.yaml"], "ping_interval: 30s", "ping_intervall: 30s", 1))
	out.Reset()
	if status := run([]string{bootstrap}, &out, &errOut); status != 1 || !strings.Contains(out.String(), `(config_discovery /etc/envoy-config/pubsub-filter.yaml): plugin_config: config: unknown key "ping_intervall"`) {
		t.Errorf("status %d, output:\n%s", status, out.String())
	}

	if err := os.Remove(filepath.Join(dir, "pubsub-filter.yaml")); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if status := run([]string{bootstrap}, &out, &errOut); status != 1 || !strings.Contains(out.String(), "pubsub-filter.yaml: not found beside the bootstrap") {
		t.Errorf("status %d, output:\n%s", status, out.String())
	}
}
