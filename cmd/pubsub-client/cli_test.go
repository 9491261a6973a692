package main

// These tests run the built command against a standalone server and kfake,
// as a user at a shell does.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/envoy-pubsub/gateway/internal/testkit"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds the command once per test run and returns its path.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "pubsub-client-test"); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "pubsub-client")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// result is how a run of the command ended.
type result struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

// runCLI runs the command with args and stdin, and fails the test if it
// does not exit within a minute.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode(), took: time.Since(began)}
	if ctx.Err() != nil {
		t.Fatalf("pubsub-client %s did not exit: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, res.stdout, res.stderr)
	}
	return res
}

// mustRun is runCLI that fails the test unless the command exits 0.
func mustRun(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	res := runCLI(t, stdin, args...)
	if res.code != 0 {
		t.Fatalf("pubsub-client %s: exit %d\nstderr: %s", strings.Join(args, " "), res.code, res.stderr)
	}
	return res.stdout
}

// cluster is a kfake cluster behind a standalone server: topic "orders" of
// three partitions (5, 2 and 0 records), "lines" (one partition, empty) for
// produce, groups "g-*", and no other topic.
type cluster struct {
	k   *kfake.Cluster
	srv *testkit.Server
	url string
	// base is the timestamp of the first record of each orders partition;
	// record i is one second later than record i-1.
	base time.Time
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	k := testkit.Kafka(t, kfake.SeedTopics(3, "orders"), kfake.SeedTopics(1, "lines"))
	srv := testkit.StartServer(t, testkit.ClusterYAML(k.ListenAddrs(),
		"    topics: [orders, lines]\n    produce_topics: [lines]\n    groups: [g-*]\n", ""), nil)
	base := time.UnixMilli(1_700_000_000_000)
	recs := testkit.SecondApart(5, base)
	recs[1].Headers = []kgo.RecordHeader{{Key: "trace", Value: []byte("t-1")}, {Key: "tenant", Value: []byte("acme")}}
	recs[2].Key = "" // no key
	testkit.Produce(t, k.ListenAddrs(), "orders", 0, recs)
	testkit.Produce(t, k.ListenAddrs(), "orders", 1, testkit.SecondApart(2, base))
	return &cluster{k: k, srv: srv, url: srv.URL("kafka"), base: base}
}

// lines splits output into its lines, sorted.
func lines(out string) []string {
	l := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if out == "" {
		l = nil
	}
	slices.Sort(l)
	return l
}

func TestReadsEveryPartitionExactlyOnceToTheEndAsJSON(t *testing.T) {
	c := newCluster(t)
	out := mustRun(t, "", "-url", c.url, "-t", "orders", "-o", "beginning", "-e", "-J")
	type record struct {
		Topic     string   `json:"topic"`
		Partition int32    `json:"partition"`
		Offset    int64    `json:"offset"`
		TSType    string   `json:"tstype"`
		TS        int64    `json:"ts"`
		Broker    int      `json:"broker"`
		Headers   []string `json:"headers"`
		Key       *string  `json:"key"`
		Payload   *string  `json:"payload"`
	}
	seen := map[string]int{}
	for _, line := range lines(out) {
		var r record
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		seen[fmt.Sprintf("%d/%d", r.Partition, r.Offset)]++
		if r.Topic != "orders" || r.TSType != "create" || r.Broker != -1 || r.Payload == nil ||
			*r.Payload != fmt.Sprintf("v%d", r.Offset) || r.TS != c.base.Add(time.Duration(r.Offset)*time.Second).UnixMilli() {
			t.Errorf("record %s", line)
		}
	}
	want := map[string]int{"0/0": 1, "0/1": 1, "0/2": 1, "0/3": 1, "0/4": 1, "1/0": 1, "1/1": 1}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("read partition/offset %v, want each of %v once", seen, want)
	}
	// kcat's field order; headers flat; null for no key and no headers.
	for _, want := range []string{
		fmt.Sprintf(`{"topic":"orders","partition":0,"offset":1,"tstype":"create","ts":%d,"broker":-1,"headers":["trace","t-1","tenant","acme"],"key":"k1","payload":"v1"}`, c.base.Add(time.Second).UnixMilli()),
		fmt.Sprintf(`{"topic":"orders","partition":0,"offset":2,"tstype":"create","ts":%d,"broker":-1,"headers":null,"key":null,"payload":"v2"}`, c.base.Add(2*time.Second).UnixMilli()),
	} {
		if !slices.Contains(lines(out), want) {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
}

func TestRelativeOffsetReadsTheLastRecordsOfEachPartition(t *testing.T) {
	c := newCluster(t)
	out := mustRun(t, "", "-url", c.url, "-t", "orders", "-o", "-3", "-e", "-f", `%p:%o\n`)
	if got, want := lines(out), []string{"0:2", "0:3", "0:4", "1:0", "1:1"}; !slices.Equal(got, want) {
		t.Fatalf("-o -3 read %q, want %q", got, want)
	}
	out = mustRun(t, "", "-url", c.url, "-t", "orders", "-p", "0", "-o", "-2", "-e", "-f", `%o\n`)
	if out != "3\n4\n" {
		t.Fatalf("-p 0 -o -2 read %q, want offsets 3 and 4", out)
	}
}

func TestOtherStartsAbsoluteAndByTimestamp(t *testing.T) {
	c := newCluster(t)
	out := mustRun(t, "", "-url", c.url, "-t", "orders", "-p", "0", "-o", "3", "-e", "-f", `%o\n`)
	if out != "3\n4\n" {
		t.Fatalf("-o 3 read %q", out)
	}
	ts := c.base.Add(time.Second).UnixMilli()
	out = mustRun(t, "", "-url", c.url, "-t", "orders", "-o", fmt.Sprintf("s@%d", ts), "-e", "-f", `%p:%o\n`)
	if got, want := lines(out), []string{"0:1", "0:2", "0:3", "0:4", "1:1"}; !slices.Equal(got, want) {
		t.Fatalf("-o s@%d read %q, want %q", ts, got, want)
	}
	// Today's long flags still read as they did.
	out = mustRun(t, "", "-url", c.url, "-topic", "orders", "-partition", "1", "-from", "earliest", "-follow=false")
	want := fmt.Sprintf("partition=1 offset=0 timestamp=%s key=\"k0\" value=\"v0\"\npartition=1 offset=1 timestamp=%s key=\"k1\" value=\"v1\"\n",
		c.base.UTC().Format(time.RFC3339Nano), c.base.Add(time.Second).UTC().Format(time.RFC3339Nano))
	if out != want {
		t.Fatalf("-from earliest -follow=false read\n%s\nwant\n%s", out, want)
	}
}

func TestCountExitsAfterThatManyRecords(t *testing.T) {
	c := newCluster(t)
	// Without -e the command would follow the log; -c ends it.
	out := mustRun(t, "", "-url", c.url, "-t", "orders", "-c", "4", "-f", `%p:%o\n`)
	got := lines(out)
	if len(got) != 4 || len(slices.Compact(slices.Clone(got))) != 4 {
		t.Fatalf("-c 4 printed %q, want 4 different records", got)
	}
	if out := mustRun(t, "", "-url", c.url, "-t", "orders", "-p", "0", "-c", "2", "-f", `%o\n`); out != "0\n1\n" {
		t.Fatalf("-p 0 -c 2 printed %q", out)
	}
}

func TestFormatTokens(t *testing.T) {
	c := newCluster(t)
	out := mustRun(t, "", "-url", c.url, "-t", "orders", "-p", "0", "-c", "3",
		"-f", `%t|%p|%o|%k|%s|%h|%T|%S|%K|100%%\t.\n`)
	ms := func(i int) int64 { return c.base.Add(time.Duration(i) * time.Second).UnixMilli() }
	want := fmt.Sprintf("orders|0|0|k0|v0||%d|2|2|100%%\t.\n", ms(0)) +
		fmt.Sprintf("orders|0|1|k1|v1|trace=t-1,tenant=acme|%d|2|2|100%%\t.\n", ms(1)) +
		fmt.Sprintf("orders|0|2||v2||%d|2|-1|100%%\t.\n", ms(2))
	if out != want {
		t.Fatalf("-f printed\n%q\nwant\n%q", out, want)
	}
}

func TestEndWithExitPrintsNothingAndExitsZero(t *testing.T) {
	c := newCluster(t)
	res := runCLI(t, "", "-url", c.url, "-t", "orders", "-o", "end", "-e", "-J")
	if res.code != 0 || res.stdout != "" {
		t.Fatalf("-o end -e: exit %d, printed %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestProduceWithKeyDelimiterAndHeadersRoundTrips(t *testing.T) {
	c := newCluster(t)
	out := mustRun(t, "user-1:{\"click\":1}\nno key\nuser-2:a:b\n",
		"-url", c.url, "-P", "-t", "lines", "-K", ":", "-H", "src=cli", "-H", "run=1")
	if out != "partition=0 offset=0\npartition=0 offset=1\npartition=0 offset=2\n" {
		t.Fatalf("-P printed %q", out)
	}
	out = mustRun(t, "", "-url", c.url, "-t", "lines", "-e", "-f", `%k|%s|%h\n`)
	if want := "user-1|{\"click\":1}|src=cli,run=1\n|no key|src=cli,run=1\nuser-2|a:b|src=cli,run=1\n"; out != want {
		t.Fatalf("read back\n%s\nwant\n%s", out, want)
	}
	// The long flags of the first version still produce.
	mustRun(t, "k\tv\n", "-url", c.url, "-produce", "-topic", "lines", "-partition", "0", "-key-separator", "\t")
	if out := mustRun(t, "", "-url", c.url, "-t", "lines", "-o", "-1", "-e", "-f", `%k=%s\n`); out != "k=v\n" {
		t.Fatalf("-produce wrote %q", out)
	}
}

func TestGroupResumesAfterWhatWasPrinted(t *testing.T) {
	c := newCluster(t)
	all := []string{"0:0", "0:1", "0:2", "0:3", "0:4", "1:0", "1:1"}
	group := []string{"-url", c.url, "-t", "orders", "-G", "g-resume", "-f", `%p:%o\n`}
	// First run: three records, committed at exit.
	first := lines(mustRun(t, "", append(group, "-c", "3")...))
	if len(first) != 3 {
		t.Fatalf("first run printed %q", first)
	}
	// Second run: the rest, each once.
	second := lines(mustRun(t, "", append(group, "-e")...))
	got := append(slices.Clone(first), second...)
	slices.Sort(got)
	if !slices.Equal(got, all) {
		t.Fatalf("first run %q and second run %q, want %q between them, each once", first, second, all)
	}
	if third := mustRun(t, "", append(group, "-e")...); third != "" {
		t.Fatalf("third run printed %q, want nothing: everything was committed", third)
	}

	// A member that is killed keeps what it committed every second.
	testkit.Produce(t, c.k.ListenAddrs(), "orders", 2, testkit.Numbered(2))
	cmd := exec.Command(binary(t), group...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	hung := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() }) // a hung member fails the test, not the run
	defer hung.Stop()
	sc := bufio.NewScanner(stdout)
	for _, want := range []string{"2:0", "2:1"} {
		if !sc.Scan() || sc.Text() != want {
			t.Fatalf("follower printed %q, want %q", sc.Text(), want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	admin := c.srv.Dial(t, "kafka")
	for {
		got, err := admin.Committed(ctx, "g-resume", "orders", 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 && got[0].GetOffset() == 2 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the running member did not commit partition 2 up to 2: %v", got)
		case <-time.After(100 * time.Millisecond):
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if out := mustRun(t, "", append(group, "-e")...); out != "" {
		t.Fatalf("after the killed member, a new one printed %q, want nothing", out)
	}
}

func TestRefusedTopicExitsAtOnceWithTheServersMessage(t *testing.T) {
	c := newCluster(t)
	for _, args := range [][]string{
		{"-t", "secret", "-e"},
		{"-t", "secret", "-o", "-3"},
		{"-t", "secret", "-G", "g-1"},
		{"-P", "-t", "orders"},
	} {
		res := runCLI(t, "a line\n", append([]string{"-url", c.url}, args...)...)
		if res.code != 1 || !strings.Contains(res.stderr, "topic not allowed") || res.stdout != "" {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want exit 1 and the server's message", args, res.code, res.stderr, res.stdout)
		}
		if res.took > 10*time.Second {
			t.Errorf("%q: took %v to give up", args, res.took)
		}
	}
	res := runCLI(t, "", "-url", strings.TrimSuffix(c.url, "kafka")+"nowhere", "-t", "orders")
	if res.code != 1 || !strings.Contains(res.stderr, "404 Not Found: no pub-sub endpoint at /nowhere") {
		t.Errorf("unknown endpoint: exit %d, stderr %q", res.code, res.stderr)
	}
}

func TestWSSWithACertificateAuthorityAndMutualTLS(t *testing.T) {
	c := newCluster(t)
	ca := testkit.NewCA(t, "gateway CA")
	dir := t.TempDir()
	caFile := ca.WriteFile(t, dir, "ca.pem")
	serverCert := ca.ServerCert(t, testkit.LoopbackNames...)
	certFile, keyFile := testkit.WriteKeyPair(t, ca.ClientCert(t, "reader"), dir, "reader")
	// serveTLS serves the standalone server's sessions over TLS.
	serveTLS := func(cfg *tls.Config) string {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
		if err != nil {
			t.Fatal(err)
		}
		hs := &http.Server{Handler: c.srv.Server, ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ln)
		t.Cleanup(func() { hs.Close() })
		return "wss://" + ln.Addr().String() + "/kafka"
	}
	read := []string{"-t", "orders", "-p", "1", "-e", "-f", `%o\n`}

	url := serveTLS(testkit.BrokerTLS(serverCert, nil))
	if out := mustRun(t, "", append([]string{"-url", url, "-cafile", caFile}, read...)...); out != "0\n1\n" {
		t.Fatalf("wss:// with -cafile read %q", out)
	}
	res := runCLI(t, "", append([]string{"-url", url}, read...)...)
	if res.code != 1 || !strings.Contains(res.stderr, "certificate signed by unknown authority") {
		t.Fatalf("wss:// without the CA: exit %d, stderr %q", res.code, res.stderr)
	}
	res = runCLI(t, "", append([]string{"-url", url, "-insecure"}, read...)...)
	if res.code != 0 || res.stdout != "0\n1\n" || !strings.Contains(res.stderr, "warning: -insecure") {
		t.Fatalf("-insecure: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}

	mtls := serveTLS(testkit.BrokerTLS(serverCert, ca))
	if out := mustRun(t, "", append([]string{"-url", mtls, "-cafile", caFile, "-cert", certFile, "-key", keyFile}, read...)...); out != "0\n1\n" {
		t.Fatalf("mutual TLS read %q", out)
	}
	if res := runCLI(t, "", append([]string{"-url", mtls, "-cafile", caFile}, read...)...); res.code != 1 {
		t.Fatalf("mutual TLS without a client certificate: exit %d, stdout %q", res.code, res.stdout)
	}
}

// The end of a log that ends in transaction markers and aborted records is
// reached too: -e does not wait for records the subscription never pushes.
func TestEndIsReachedPastTransactionMarkersAndAbortedRecords(t *testing.T) {
	c := newCluster(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.k.ListenAddrs()...), kgo.TransactionalID("cli-test"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.DefaultProduceTopic("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, commit := range []kgo.TransactionEndTry{kgo.TryCommit, kgo.TryAbort} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		rec := &kgo.Record{Partition: 2, Value: []byte(fmt.Sprintf("commit=%v", commit))}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	res := runCLI(t, "", "-url", c.url, "-t", "orders", "-p", "2", "-e", "-f", `%o %s\n`)
	if res.code != 0 || res.stdout != "0 commit=true\n" {
		t.Fatalf("exit %d, printed %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestEndWithoutExitFollowsNewRecords(t *testing.T) {
	c := newCluster(t)
	cmd := exec.Command(binary(t), "-url", c.url, "-t", "orders", "-o", "end", "-c", "1", "-f", `%p:%s\n`)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Records written before the subscription starts are not printed; write
	// one every 100ms until the command has printed one and exited.
	deadline := time.After(30 * time.Second)
	for {
		testkit.Produce(t, c.k.ListenAddrs(), "orders", 2, []testkit.Record{{Value: "new"}})
		select {
		case err := <-exited:
			if err != nil || stdout.String() != "2:new\n" {
				t.Fatalf("exit %v, printed %q, want one new record", err, stdout.String())
			}
			return
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("-o end -c 1 printed %q and did not exit", stdout.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestSIGTERMEndsAGroupMemberWithStatusZeroAndItsCommits(t *testing.T) {
	c := newCluster(t)
	cmd := exec.Command(binary(t), "-url", c.url, "-t", "orders", "-G", "g-signal", "-f", `%p:%o\n`)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	hung := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() }) // a hung member fails the test, not the run
	defer hung.Stop()
	sc := bufio.NewScanner(stdout)
	for n := 0; n < 7; n++ {
		if !sc.Scan() {
			t.Fatalf("the member printed %d records, want 7", n)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("after SIGTERM: %v, want exit status 0", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.srv.Dial(t, "kafka").Committed(ctx, "g-signal", "orders")
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{0: 5, 1: 2, 2: -1}
	if len(got) != len(want) {
		t.Fatalf("committed %v, want %v", got, want)
	}
	for _, o := range got {
		if want[o.GetPartition()] != o.GetOffset() {
			t.Errorf("committed %v, want %v", got, want)
			break
		}
	}
}
