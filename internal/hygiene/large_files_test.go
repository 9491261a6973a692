// Package hygiene tests the repository checks that ./test.sh runs.
package hygiene

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// largeFiles runs .ci/large-files in a git repository holding files (name
// to size in bytes) and returns its output and whether it passed.
func largeFiles(t *testing.T, files map[string]int) (string, bool) {
	t.Helper()
	script, err := filepath.Abs("../../.ci/large-files")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	git := func(args ...string) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	for name, size := range files {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git("add", ".")
	cmd := exec.Command(script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

func TestLargeFilesFailsOnATrackedBinaryOverOneMegabyte(t *testing.T) {
	const mb = 1 << 20
	out, ok := largeFiles(t, map[string]int{"pubsub-server": 21 * mb, "main.go": 10})
	if ok || !strings.Contains(out, "pubsub-server is tracked and is 22020096 bytes") {
		t.Fatalf("a 21 MB binary passed the check (ok=%v): %s", ok, out)
	}
	if out, ok := largeFiles(t, map[string]int{"page.png": mb - 1, "generated.pb.go": 2 * mb}); !ok {
		t.Fatalf("a small image and a large source file failed the check: %s", out)
	}
}
