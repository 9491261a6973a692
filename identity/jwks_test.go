package identity_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
	"github.com/envoy-pubsub/gateway/internal/testkit"
)

// jwksServer serves a JWK Set whose answer the test changes, counting
// fetches.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int32
	mu      sync.Mutex
	status  int
	body    []byte
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{status: http.StatusOK, body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		status, body := s.status, s.body
		s.mu.Unlock()
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

// serve makes the server answer status and body from now on.
func (s *jwksServer) serve(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

// awaitFetches waits until the server has been fetched n times.
func (s *jwksServer) awaitFetches(t *testing.T, n int32) {
	t.Helper()
	testkit.Eventually(t, "the JWK Set fetched", func() bool { return s.fetches.Load() >= n })
	if got := s.fetches.Load(); got != n {
		t.Fatalf("fetched %d times, want %d", got, n)
	}
}

// TestJWKSURIFetchedOnceByConcurrentTokensAndRefreshedWhenStale: tokens
// arriving together wait for one fetch; a token that finds the set older
// than jwks_refresh_interval is verified with it at once while the set is
// fetched again behind it, and the next tokens use the new set (a rotated
// key).
func TestJWKSURIFetchedOnceByConcurrentTokensAndRefreshedWhenStale(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv := newJWKSServer(t, is.JWKS)
	// A token verified this long after the last fetch starts another: the
	// counts below hold unless the machine pauses a token for as long.
	const every = time.Second
	v := newVerifier(t, &config.JWT{JWKSURI: srv.URL, JWKSRefreshInterval: config.Duration(every)}, nil)
	token := is.Token(t, "alice", time.Minute, nil)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), token); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	srv.awaitFetches(t, 1)

	rotated, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srv.serve(http.StatusOK, testkit.PublicJWKS(t, map[string]crypto.PublicKey{"ES256": rotated.Public()}))
	time.Sleep(every + 50*time.Millisecond)
	// The stale set still verifies this token; it starts the fetch.
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatalf("a token verified while the set is fetched again: %v", err)
	}
	srv.awaitFetches(t, 2)
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, is.Claims("alice", time.Minute, nil))
	tok.Header["kid"] = "ec-1"
	signed, err := tok.SignedString(rotated)
	if err != nil {
		t.Fatal(err)
	}
	// The server counts the request before the verifier has read and
	// stored the answer: the rotated key verifies once it has, and the
	// tokens tried meanwhile (naming a key the set has) fetch nothing.
	testkit.Eventually(t, "the rotated key of the refreshed set verifies", func() bool {
		_, err := v.Verify(context.Background(), signed)
		return err == nil
	})
	if n := srv.fetches.Load(); n != 2 {
		t.Fatalf("fetched %d times, want 2", n)
	}
}

// TestJWKSURIFailures: a jwks_uri that answers an error, a document that is
// not a JWK Set, or one too large, refuses tokens with ErrJWKSUnavailable
// (not a token error: the token was never judged) and is not fetched again
// within a few seconds; a set fetched before stays in use when a refresh
// fails, and the failure is logged.
func TestJWKSURIFailures(t *testing.T) {
	is := testkit.NewIssuer(t)
	token := is.Token(t, "alice", time.Minute, nil)
	for name, c := range map[string]struct {
		status int
		body   []byte
	}{
		"status 500": {http.StatusInternalServerError, is.JWKS},
		"not json":   {http.StatusOK, []byte("<html>")},
		"no keys":    {http.StatusOK, []byte(`{"keys": [{"kty": "RSA"}]}`)},
		"too large":  {http.StatusOK, append(append([]byte(`{"keys": [], "pad": "`), bytes.Repeat([]byte("a"), 2<<20)...), '"', '}')},
	} {
		srv := newJWKSServer(t, c.body)
		srv.serve(c.status, c.body)
		v := newVerifier(t, &config.JWT{JWKSURI: srv.URL}, slog.New(slog.DiscardHandler))
		for range 3 {
			_, err := v.Verify(context.Background(), token)
			var te *identity.TokenError
			if !errors.Is(err, identity.ErrJWKSUnavailable) || errors.As(err, &te) {
				t.Errorf("%s: %v, want ErrJWKSUnavailable", name, err)
			}
		}
		if n := srv.fetches.Load(); n != 1 {
			t.Errorf("%s: fetched %d times for three tokens at once after a failure, want 1", name, n)
		}
	}

	logs := &testkit.LogBuffer{}
	srv := newJWKSServer(t, is.JWKS)
	const every = 200 * time.Millisecond
	v := newVerifier(t, &config.JWT{JWKSURI: srv.URL, JWKSRefreshInterval: config.Duration(every)},
		slog.New(slog.NewTextHandler(logs, nil)))
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	srv.serve(http.StatusServiceUnavailable, nil)
	time.Sleep(every + 50*time.Millisecond)
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatalf("stale set: %v", err)
	}
	srv.awaitFetches(t, 2)
	testkit.Eventually(t, "the failed refresh logged", func() bool { return strings.Contains(logs.String(), "fetching the JWK Set failed") })
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatalf("after a failed refresh, the set fetched before: %v", err)
	}
	if strings.Contains(logs.String(), token) || strings.Contains(logs.String(), "alice") {
		t.Error("a token or a claim reached the log")
	}
}

// TestJWKSURIRunsNoLibraryGoroutine: verifying with a jwks_uri leaves no
// goroutine of the JWK Set libraries running (inside Envoy, a panic in a
// goroutine the gateway does not recover would end the proxy): the
// gateway fetches the set itself, and between tokens nothing runs.
func TestJWKSURIRunsNoLibraryGoroutine(t *testing.T) {
	is := testkit.NewIssuer(t)
	srv := newJWKSServer(t, is.JWKS)
	const every = 100 * time.Millisecond
	v := newVerifier(t, &config.JWT{JWKSURI: srv.URL, JWKSRefreshInterval: config.Duration(every)}, nil)
	token := is.Token(t, "alice", time.Minute, nil)
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	time.Sleep(every + 50*time.Millisecond)
	if _, err := v.Verify(context.Background(), token); err != nil {
		t.Fatal(err)
	}
	srv.awaitFetches(t, 2)
	testkit.Eventually(t, "no goroutine of the JWK Set libraries or of a fetch", func() bool {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(stacks, "MicahParks") && !strings.Contains(stacks, "identity.(*remoteKeys)")
	})
}

// TestJWKSURILoggedRedacted: the failures of a jwks_uri that carries a
// password and a key in its query are logged, and returned, naming the URL
// without either: the password masked, the query dropped.
func TestJWKSURILoggedRedacted(t *testing.T) {
	is := testkit.NewIssuer(t)
	token := is.Token(t, "alice", time.Minute, nil)
	srv := newJWKSServer(t, nil)
	srv.serve(http.StatusInternalServerError, nil)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // refuses connections: the error names the URL
	for name, base := range map[string]string{"error status": srv.URL, "refused": gone.URL} {
		logs := &testkit.LogBuffer{}
		uri := strings.Replace(base, "http://", "http://reader:pa55word@", 1) + "/keys?api_key=qu3rykey"
		v := newVerifier(t, &config.JWT{JWKSURI: uri}, slog.New(slog.NewTextHandler(logs, nil)))
		_, err := v.Verify(context.Background(), token)
		if !errors.Is(err, identity.ErrJWKSUnavailable) {
			t.Fatalf("%s: %v, want ErrJWKSUnavailable", name, err)
		}
		testkit.Eventually(t, "the failed fetch logged", func() bool { return strings.Contains(logs.String(), "fetching the JWK Set failed") })
		for _, out := range []string{logs.String(), err.Error()} {
			if strings.Contains(out, "pa55word") || strings.Contains(out, "qu3rykey") {
				t.Errorf("%s: a secret of the URL shown: %s", name, out)
			}
		}
		if want := strings.Replace(base, "http://", "http://reader:xxxxx@", 1) + "/keys"; !strings.Contains(logs.String(), "jwks_uri="+want+" ") {
			t.Errorf("%s: log %q, want jwks_uri=%s", name, logs.String(), want)
		}
	}
}
