// Package e2e runs the real thing: Envoy (contrib image with the plugin, built
// from the repository's Dockerfile and envoy.yaml), Kafka and an HTTP echo
// backend in Docker Compose, driven from the host with the Go client. It needs
// a Docker engine with the compose plugin and skips without one.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// The compose file and the project name its containers run under.
const (
	composeFile    = "compose.yaml"
	composeProject = "envoy-pubsub-e2e"
)

func TestEnvoyEndToEnd(t *testing.T) {
	requireDocker(t)
	envoyAddr := "127.0.0.1:" + envOr("E2E_ENVOY_PORT", "18080")
	kafkaAddr := "127.0.0.1:" + envOr("E2E_KAFKA_PORT", "19092")

	composeUp(t)
	waitForHTTP(t, "http://"+envoyAddr+"/", 2*time.Minute)

	orders := testkit.Produce(t, []string{kafkaAddr}, "orders", 0, testkit.Numbered(5), kgo.AllowAutoTopicCreation())
	news := testkit.Produce(t, []string{kafkaAddr}, "public-news", 0, testkit.Numbered(2), kgo.AllowAutoTopicCreation())

	t.Run("plain request to the kafka route gets 426", func(t *testing.T) {
		resp, body := get(t, "http://"+envoyAddr+"/kafka", nil)
		if resp.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("status %d, body %q; want 426", resp.StatusCode, body)
		}
	})

	t.Run("session through envoy", func(t *testing.T) {
		// A client-sent ticket must be replaced by the filter's, not trusted.
		c := dial(t, "ws://"+envoyAddr+"/kafka", http.Header{"X-Pubsub-Ticket": {"forged"}})
		ctx := timeout(t)
		state, err := c.Ping(ctx, []byte("e2e"))
		if err != nil || string(state) != "e2e" {
			t.Fatalf("ping: state %q, err %v", state, err)
		}
		for ts, want := range map[int64]int64{-2: orders[0], -1: orders[len(orders)-1] + 1} {
			got, err := c.ListOffset(ctx, "orders", 0, ts)
			if err != nil || got != want {
				t.Fatalf("list offset %d: got %d, err %v; want %d", ts, got, err, want)
			}
		}
		expectRecords(t, c, "orders", orders)
	})

	t.Run("narrowed route allows only its topics", func(t *testing.T) {
		c := dial(t, "ws://"+envoyAddr+"/kafka/public", nil)
		expectRecords(t, c, "public-news", news)
		_, err := c.Fetch(timeout(t), "orders", 0, 0)
		var serverErr *client.ServerError
		if !errors.As(err, &serverErr) || !strings.Contains(serverErr.Message, "topic not allowed") {
			t.Fatalf("fetch of orders on /kafka/public: %v; want error_resp topic not allowed", err)
		}
	})

	t.Run("ordinary route passes through untouched", func(t *testing.T) {
		resp, body := get(t, "http://"+envoyAddr+"/shop/items?page=2", http.Header{"X-Pubsub-Ticket": {"from-client"}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, body %q", resp.StatusCode, body)
		}
		var echoed struct {
			Path    string            `json:"path"`
			Headers map[string]string `json:"headers"`
		}
		if err := json.Unmarshal(body, &echoed); err != nil {
			t.Fatalf("echo backend answer is not its JSON: %v: %q", err, body)
		}
		if echoed.Path != "/shop/items" || echoed.Headers["x-pubsub-ticket"] != "from-client" {
			t.Fatalf("backend saw path %q, x-pubsub-ticket %q; want /shop/items, from-client", echoed.Path, echoed.Headers["x-pubsub-ticket"])
		}
	})
}

// requireDocker skips the test unless a Docker engine and compose answer.
func requireDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("e2e: skipped, no Docker engine (docker info: %s)", firstLine(out, err))
	}
	if out, err := exec.CommandContext(ctx, "docker", "compose", "version").CombinedOutput(); err != nil {
		t.Skipf("e2e: skipped, no docker compose plugin (%s)", firstLine(out, err))
	}
}

// composeUp builds and starts the environment, and tears it down (volumes
// included) when the test ends, with Envoy's log if the test failed.
func composeUp(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := compose(2*time.Minute, "logs", "--no-color", "--tail", "200", "envoy")
			t.Logf("envoy log:\n%s", out)
		}
		if out, err := compose(5*time.Minute, "down", "--volumes", "--remove-orphans"); err != nil {
			t.Errorf("docker compose down: %v\n%s", err, out)
		}
	})
	if out, err := compose(15*time.Minute, "up", "--detach", "--build", "--wait"); err != nil {
		t.Fatalf("docker compose up: %v\n%s", err, out)
	}
}

func compose(limit time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", append([]string{"compose", "-p", composeProject, "-f", composeFile}, args...)...).CombinedOutput()
	return string(out), err
}

// waitForHTTP polls url until it answers at all (Envoy is listening).
func waitForHTTP(t *testing.T, url string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("envoy did not answer at %s within %s: %v", url, limit, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func get(t *testing.T, url string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(timeout(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp, body
}

func dial(t *testing.T, url string, header http.Header) *client.Client {
	t.Helper()
	c, err := client.Dial(timeout(t), url, client.Options{Header: header})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// expectRecords fetches topic partition 0 from the first offset on until it
// holds as many records as were produced, and checks them (testkit.Numbered).
func expectRecords(t *testing.T, c *client.Client, topic string, offsets []int64) {
	t.Helper()
	var got []*pb.KafkaMessage
	next := offsets[0]
	for len(got) < len(offsets) {
		msgs, err := c.Fetch(timeout(t), topic, 0, next)
		if err != nil {
			t.Fatalf("fetch %s at %d: %v", topic, next, err)
		}
		if len(msgs) == 0 {
			t.Fatalf("fetch %s at %d: no records, want %d more", topic, next, len(offsets)-len(got))
		}
		got = append(got, msgs...)
		next = msgs[len(msgs)-1].GetOffset() + 1
	}
	for i, m := range got[:len(offsets)] {
		if m.GetOffset() != offsets[i] || string(m.GetValue()) != fmt.Sprintf("v%d", i) {
			t.Fatalf("%s record %d: offset %d value %q; want offset %d value v%d", topic, i, m.GetOffset(), m.GetValue(), offsets[i], i)
		}
	}
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func firstLine(out []byte, err error) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if line == "" {
		return err.Error()
	}
	return line
}
