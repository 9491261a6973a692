package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/envoy-pubsub/gateway/client"
	"github.com/envoy-pubsub/gateway/internal/testkit"
	pb "github.com/envoy-pubsub/gateway/proto"
)

// startBinary builds and runs pubsub-server with args and returns the URL of
// cluster "kafka" from its log.
func startBinary(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pubsub-server")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, append([]string{"-listen", "127.0.0.1:0", "-metrics-listen", "127.0.0.1:0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	urls := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`url=(ws://\S+/kafka)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case u := <-urls:
		return cmd, u
	case <-time.After(30 * time.Second):
		t.Fatal("server did not log its URL")
	}
	return nil, ""
}

func TestServesAConfigFileAndShutsDownOnSIGTERM(t *testing.T) {
	k := testkit.Kafka(t, kfake.SeedTopics(1, "orders"))
	testkit.Produce(t, k.ListenAddrs(), "orders", 0, testkit.Numbered(3))
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(testkit.ClusterYAML(k.ListenAddrs(), "", "")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd, url := startBinary(t, "-config", cfg)
	ctx, c := dial(t, url)
	if off, err := c.ListOffset(ctx, "orders", 0, -1); err != nil || off != 3 {
		t.Fatalf("list offset: %d, %v", off, err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session not closed on SIGTERM")
	}
	var ce client.CloseError
	if !errors.As(c.Err(), &ce) || ce.Code != ws.StatusGoingAway {
		t.Fatalf("session ended with %v, want close 1001", c.Err())
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
}

// dial opens a session on url; the session and the returned context (20
// seconds) end with the test.
func dial(t *testing.T, url string) (context.Context, *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	c, err := client.Dial(ctx, url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return ctx, c
}

func TestWithoutConfigServesTheEmbeddedDemoTopic(t *testing.T) {
	_, url := startBinary(t)
	ctx, c := dial(t, url)
	var seen int
	for deadline := time.Now().Add(5 * time.Second); seen < 2 && time.Now().Before(deadline); {
		msgs, err := c.Fetch(ctx, "demo", 0, int64(seen))
		if err != nil {
			t.Fatal(err)
		}
		seen += len(msgs)
	}
	if seen < 2 {
		t.Fatalf("read %d demo records in 5s, want a record every second", seen)
	}
}

func TestServesTheLivePageBesideTheEndpoints(t *testing.T) {
	_, url := startBinary(t)
	base := "http://" + strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/kafka")
	for path, want := range map[string]string{
		"/":                 "200 text/html; charset=utf-8",
		"/_page/site.json":  `200 application/json {"clusters":["kafka"],"topic":"demo"}`,
		"/kafka":            "426 text/plain; charset=utf-8",
		"/no-such-endpoint": "404 text/plain; charset=utf-8",
	} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		if strings.HasSuffix(path, ".json") {
			got += " " + string(body)
		}
		if got != want {
			t.Errorf("GET %s: %s, want %s", path, got, want)
		}
	}
}

// TestEmbeddedDemoTopicTakesWritesAndGroups runs the README's end-to-end
// example against the embedded Kafka: produce to demo, read it as a member
// of group demo-readme, commit, and read the commit back.
func TestEmbeddedDemoTopicTakesWritesAndGroups(t *testing.T) {
	_, url := startBinary(t)
	ctx, c := dial(t, url)
	written, err := c.Produce(ctx, "demo", -1, &pb.KafkaRecord{Key: []byte("user-1"), Value: []byte(`{"click":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, &pb.CmdKafkaSubscribe{Topic: "demo", Group: "demo-readme",
		Start: &pb.CmdKafkaSubscribe_Earliest{Earliest: true}})
	if err != nil {
		t.Fatal(err)
	}
	errFound := errors.New("found")
	var assigned []int32
	next := map[int32]int64{}
	err = sub.Handle(ctx, client.GroupHandler{
		OnAssignment: func(a *pb.KafkaAssignment) error {
			assigned = append(assigned, a.GetAssigned()...)
			return nil
		},
		OnRecords: func(_ string, p int32, msgs []*pb.KafkaMessage) error {
			for _, m := range msgs {
				next[p] = m.GetOffset() + 1
				if string(m.GetValue()) == `{"click":1}` {
					return errFound
				}
			}
			return nil
		},
	})
	if !errors.Is(err, errFound) || len(assigned) != 1 || assigned[0] != 0 {
		t.Fatalf("group subscription: %v, assigned %v", err, assigned)
	}
	commit := &pb.KafkaPartitionOffset{Partition: 0, Offset: next[0]}
	if commit.Offset != written[0].GetOffset()+1 {
		t.Fatalf("read up to %d, wrote at %d", commit.Offset, written[0].GetOffset())
	}
	if err := c.Commit(ctx, "demo-readme", "demo", commit); err != nil {
		t.Fatal(err)
	}
	got, err := c.Committed(ctx, "demo-readme", "demo")
	if err != nil || len(got) != 1 || got[0].GetOffset() != commit.Offset {
		t.Fatalf("committed %v, %v; want %d", got, err, commit.Offset)
	}
}

// A SIGTERM as soon as the server says where it serves still drains and
// exits cleanly: signals are taken before that line.
func TestSIGTERMRightAfterStartExitsCleanly(t *testing.T) {
	cmd, _ := startBinary(t)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v (the signal was not handled)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
}
