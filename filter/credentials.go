package filter

import (
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoy-pubsub/gateway/config"
)

// passwordFilePoll is how often a password_file is checked for a change
// (a rotated Kubernetes Secret replaces the file behind a symlink).
const passwordFilePoll = 10 * time.Second

// credentials resolves the SASL password of each kafka cluster of one
// filter-level config. A password_file or password_env is read once when
// the config is parsed and a password_file again only when it changes,
// checked by a background goroutine: DecodeHeaders, on an Envoy worker,
// never touches the file system. Inline passwords need no I/O, and a
// password_secret is Envoy's request-scoped API, read per upgrade so that
// a rotated SDS secret applies to the next session.
type credentials struct {
	resolved map[string]*atomic.Pointer[resolution] // clusters with a file or env password
	stop     chan struct{}
	stopOnce sync.Once
	done     chan struct{} // closed when the watcher has returned
}

// resolution is a cluster snapshot with its password read, or why it could
// not be read, and the file's identity when it was.
type resolution struct {
	cluster *config.KafkaCluster
	err     error
	file    fileStamp
}

// fileStamp identifies a version of a file: a replaced or rewritten file
// differs in at least one field.
type fileStamp struct {
	modTime time.Time
	size    int64
	inode   any
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{modTime: fi.ModTime(), size: fi.Size(), inode: fi.Sys()}
}

// newCredentials reads every password_file and password_env of doc and,
// when there is a password_file, watches it every poll until close.
func newCredentials(doc *config.Document, poll time.Duration) *credentials {
	c := &credentials{resolved: map[string]*atomic.Pointer[resolution]{}, stop: make(chan struct{}), done: make(chan struct{})}
	var files []string
	for _, name := range doc.ClusterNames() {
		kc := doc.KafkaClusters[name]
		if kc.SASL == nil || (kc.SASL.PasswordFile == "" && kc.SASL.PasswordEnv == "") {
			continue
		}
		p := &atomic.Pointer[resolution]{}
		p.Store(resolve(kc))
		c.resolved[name] = p
		if kc.SASL.PasswordFile != "" {
			files = append(files, name)
		}
	}
	if len(files) == 0 {
		close(c.done)
		return c
	}
	go c.watch(doc, files, poll)
	return c
}

func resolve(kc *config.KafkaCluster) *resolution {
	r := &resolution{}
	if kc.SASL.PasswordFile != "" {
		r.file = stampOf(kc.SASL.PasswordFile)
	}
	r.cluster, r.err = kc.WithPassword(nil)
	return r
}

// watch re-reads a cluster's password_file when its stamp changes. It
// neither logs nor touches Envoy: a failed read is reported by the next
// upgrade that needs it, on the worker, while the config lives.
func (c *credentials) watch(doc *config.Document, clusters []string, poll time.Duration) {
	defer close(c.done)
	defer func() {
		if p := recover(); p != nil {
			// Nothing may reach Envoy from here (the config may be
			// destroyed); the process's stderr is Envoy's log.
			os.Stderr.WriteString("pubsub: password_file watcher panicked: " + string(debug.Stack()) + "\n")
		}
	}()
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-ticker.C:
		}
		for _, name := range clusters {
			kc := doc.KafkaClusters[name]
			p := c.resolved[name]
			old := p.Load()
			if stampOf(kc.SASL.PasswordFile) == old.file {
				continue
			}
			// A file that cannot be read now (mid-rotation, say) keeps
			// the last password that could.
			if r := resolve(kc); r.err == nil || old.err != nil {
				p.Store(r)
			}
		}
	}
}

// snapshot returns cluster kc (named name) with its SASL password
// resolved: the stored resolution of a file or env password, else kc's own
// source through secret (Envoy's generic secrets).
func (c *credentials) snapshot(name string, kc *config.KafkaCluster, secret func(string) (string, bool)) (*config.KafkaCluster, error) {
	if p := c.resolved[name]; p != nil {
		r := p.Load()
		return r.cluster, r.err
	}
	return kc.WithPassword(secret)
}

// close stops the watcher and waits for it.
func (c *credentials) close() {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.done
}
