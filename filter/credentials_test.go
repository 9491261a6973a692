package filter

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/envoy-pubsub/gateway/sessionhost"
)

// passwordOfNextTicket runs an upgrade and returns the SASL password its
// ticket carries.
func passwordOfNextTicket(t *testing.T, p *plugin) string {
	t.Helper()
	cb := routedTo("kafka")
	h := upgradeHeaders()
	if st := decode(p.cfg, cb, h); st != api.Continue {
		t.Fatalf("upgrade: status %v, replies %+v", st, cb.replies)
	}
	v, _ := h.Get(sessionhost.TicketHeader)
	g, err := p.cfg.host.Redeem(v)
	if err != nil {
		t.Fatal(err)
	}
	return g.Kafka.SASL.Password.Reveal()
}

// A password_file is read when the config is parsed, not per upgrade (the
// worker thread never waits for the file system), and again after the file
// changes, as a rotated Kubernetes Secret does.
func TestPasswordFileIsReadOnceAndOnChange(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "password")
	if err := os.WriteFile(file, []byte("first-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := parsePlugin(t, "kafka_clusters:\n  kafka:\n    brokers: ['127.0.0.1:1']\n    sasl: {mechanism: PLAIN, username: app, password_file: "+strconv.Quote(file)+"}\n")
	if got := passwordOfNextTicket(t, p); got != "first-s3cret" {
		t.Fatalf("password %q, want the file's", got)
	}
	// Gone from disk: upgrades keep the password read at parse time.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if got := passwordOfNextTicket(t, p); got != "first-s3cret" {
		t.Fatalf("password after the file was removed: %q; the filter read it again per upgrade", got)
	}

	// A watcher polling fast stands in for the 10s one; it keeps the last
	// password it could read while the file is gone.
	if err := os.WriteFile(file, []byte("first-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cfg.credentials.close()
	p.cfg.credentials = newCredentials(p.cfg.doc, 5*time.Millisecond)
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // several polls of the watcher
	if got := passwordOfNextTicket(t, p); got != "first-s3cret" {
		t.Fatalf("password while the file is gone: %q", got)
	}
	tmp := filepath.Join(dir, ".password.tmp")
	if err := os.WriteFile(tmp, []byte("second-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); passwordOfNextTicket(t, p) != "second-s3cret"; {
		if time.Now().After(deadline) {
			t.Fatal("the rotated password_file was never read again")
		}
		time.Sleep(5 * time.Millisecond)
	}
	assertNoSecretsLogged(t, "first-s3cret", "second-s3cret")
}

// An unreadable password_file refuses upgrades with 503, like a missing
// secret, until the file appears.
func TestUnreadablePasswordFileRefusesUpgrades(t *testing.T) {
	file := filepath.Join(t.TempDir(), "absent")
	p := parsePlugin(t, "kafka_clusters:\n  kafka:\n    brokers: ['127.0.0.1:1']\n    sasl: {mechanism: PLAIN, username: app, password_file: "+strconv.Quote(file)+"}\n")
	cb := routedTo("kafka")
	if st := decode(p.cfg, cb, upgradeHeaders()); st != api.LocalReply || cb.replies[0].status != 503 {
		t.Fatalf("status %v, replies %+v; want 503", st, cb.replies)
	}
	p.cfg.credentials.close()
	p.cfg.credentials = newCredentials(p.cfg.doc, 5*time.Millisecond)
	if err := os.WriteFile(file, []byte("late-s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		cb := routedTo("kafka")
		if decode(p.cfg, cb, upgradeHeaders()) == api.Continue {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the password_file that appeared was never read")
		}
	}
}
