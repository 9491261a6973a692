package kafka

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestTokenFileKeepsTheLastTokenWhileTheFileIsGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	write := func(token string, at time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	f := &tokenFile{path: path}
	now := time.Now()
	write("first", now)
	if tok, err := f.token(); tok != "first" || err != nil {
		t.Fatalf("token %q, %v", tok, err)
	}
	write("second", now.Add(time.Second))
	if tok, _ := f.token(); tok != "second" {
		t.Fatalf("after the file changed: %q, want second", tok)
	}
	os.Remove(path)
	if tok, err := f.token(); tok != "second" || err != nil {
		t.Fatalf("while the file is gone: %q, %v; want the last token", tok, err)
	}
	write("  \n", now.Add(2*time.Second))
	if tok, err := f.token(); tok != "second" || err != nil {
		t.Fatalf("while the file is empty: %q, %v; want the last token", tok, err)
	}
}
