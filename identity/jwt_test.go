package identity_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/envoy-pubsub/gateway/config"
	"github.com/envoy-pubsub/gateway/identity"
	"github.com/envoy-pubsub/gateway/internal/testkit"
)

func newVerifier(t *testing.T, c *config.JWT, log *slog.Logger) *identity.Verifier {
	t.Helper()
	if c.JWKSRefreshInterval == 0 {
		c.JWKSRefreshInterval = config.Duration(config.DefaultJWKSRefreshInterval)
	}
	v, err := identity.NewVerifier(c, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func fileConfig(is *testkit.Issuer) *config.JWT {
	return &config.JWT{JWKSFile: is.JWKSFile, Issuer: is.Name, Audiences: []string{"other", is.Audience}}
}

func TestVerifyAcceptsEachSigningMethod(t *testing.T) {
	is := testkit.NewIssuer(t)
	v := newVerifier(t, fileConfig(is), nil)
	for _, method := range identity.SigningMethods {
		claims, err := v.Verify(context.Background(), is.Sign(t, method, is.Claims("alice", time.Minute, map[string]any{"n": 42})))
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if claims.Subject() != "alice" || !slices.Equal(claims.Values("n"), []string{"42"}) {
			t.Fatalf("%s: claims %v", method, claims)
		}
		if exp, ok := claims.Expiry(); !ok || time.Until(exp) <= 0 || time.Until(exp) > time.Minute+time.Second {
			t.Fatalf("%s: expiry %v %v", method, exp, ok)
		}
	}
}

// TestVerifyRefusesBadTokens: every kind of bad token is a *TokenError
// with a reason that quotes nothing of the token, and none panics.
func TestVerifyRefusesBadTokens(t *testing.T) {
	is := testkit.NewIssuer(t)
	var logs bytes.Buffer
	v := newVerifier(t, fileConfig(is), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	other := testkit.NewIssuer(t) // same key IDs, other keys

	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, is.Claims("alice", time.Minute, nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	// HMAC keyed with the issuer's public key, which anyone has.
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(is.JWKS, &set); err != nil {
		t.Fatal(err)
	}
	hmac := func(kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, is.Claims("alice", time.Minute, nil))
		tok.Header["kid"] = kid
		var pub []byte
		for _, k := range set.Keys {
			if k["kid"] == kid {
				pub, _ = json.Marshal(k)
			}
		}
		s, err := tok.SignedString(pub)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	noExp := is.Claims("alice", time.Minute, nil)
	delete(noExp, "exp")
	wrongIss := is.Claims("alice", time.Minute, nil)
	wrongIss["iss"] = "https://evil.test"
	wrongAud := is.Claims("alice", time.Minute, nil)
	wrongAud["aud"] = "someone-else"
	notYet := is.Claims("alice", time.Hour, map[string]any{"nbf": time.Now().Add(10 * time.Minute).Unix()})

	cases := map[string]struct{ token, reason string }{
		"expired":      {is.Sign(t, "ES256", is.Claims("alice", -time.Minute, nil)), "token expired"},
		"not yet":      {is.Sign(t, "RS256", notYet), "token not valid yet"},
		"no exp":       {is.Sign(t, "EdDSA", noExp), "token has no exp claim"},
		"wrong issuer": {is.Sign(t, "RS256", wrongIss), "wrong issuer"},
		"wrong aud":    {is.Sign(t, "RS256", wrongAud), "wrong audience"},
		"wrong key":    {other.Sign(t, "RS256", is.Claims("alice", time.Minute, nil)), "signature not verified"},
		"wrong ec key": {other.Sign(t, "ES256", is.Claims("alice", time.Minute, nil)), "signature not verified"},
		"alg none":     {none, "signing algorithm not allowed"},
		"hmac rsa":     {hmac("rsa-1"), "signing algorithm not allowed"},
		"hmac ed":      {hmac("ed-1"), "signing algorithm not allowed"},
		"garbage":      {"not a token", "malformed token"},
		"three parts":  {"a.b.c", "malformed token"},
		"empty":        {"", "malformed token"},
		"tampered":     {tamper(is.Token(t, "alice", time.Minute, nil)), "signature not verified"},
	}
	for name, c := range cases {
		claims, err := v.Verify(context.Background(), c.token)
		var te *identity.TokenError
		if !errors.As(err, &te) || !errors.Is(err, identity.ErrInvalidToken) {
			t.Errorf("%s: got claims %v, err %v; want a TokenError", name, claims, err)
			continue
		}
		if !strings.HasPrefix(te.Reason, c.reason) {
			t.Errorf("%s: reason %q, want %q", name, te.Reason, c.reason)
		}
		if c.token != "" && strings.Contains(err.Error(), c.token) {
			t.Errorf("%s: the error quotes the token", name)
		}
	}
	for name, c := range cases {
		if c.token != "" && strings.Contains(logs.String(), c.token) {
			t.Errorf("%s: the token reached the log", name)
		}
	}
	if strings.Contains(logs.String(), "alice") {
		t.Error("a claim reached the log")
	}
}

// tamper changes the payload of a signed token to another subject.
func tamper(token string) string {
	parts := strings.Split(token, ".")
	parts[1] = strings.TrimRight(parts[1], "=") + "x"
	return strings.Join(parts, ".")
}

func TestVerifierConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte("not json"), 0o600)
	empty := filepath.Join(dir, "empty.json")
	os.WriteFile(empty, []byte(`{"keys": [{"kty": "RSA"}]}`), 0o600)
	for _, file := range []string{filepath.Join(dir, "missing.json"), bad, empty} {
		_, err := identity.NewVerifier(&config.JWT{JWKSFile: file}, nil)
		if err == nil || !strings.Contains(err.Error(), "identity.jwt.jwks_file") {
			t.Errorf("%s: got %v, want an error naming identity.jwt.jwks_file", file, err)
		}
	}
}

// TestJWKSURIFetchedOnceAndOnUnknownKey: the JWK Set of a jwks_uri is
// fetched on the first token, cached for the next, and fetched again when a
// token names a key it lacks (a rotated key).
func TestJWKSURIFetchedOnceAndOnUnknownKey(t *testing.T) {
	is := testkit.NewIssuer(t)
	rotated, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var fetches atomic.Int32
	var serveRotated atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if serveRotated.Load() {
			w.Write(testkit.PublicJWKS(t, map[string]crypto.PublicKey{"ES256": rotated.Public()}))
			return
		}
		w.Write(is.JWKS)
	}))
	defer srv.Close()
	v := newVerifier(t, &config.JWT{JWKSURI: srv.URL + "/jwks.json", Issuer: is.Name}, nil)
	if fetches.Load() != 0 {
		t.Fatalf("fetched %d times before the first token", fetches.Load())
	}
	for range 3 {
		if _, err := v.Verify(context.Background(), is.Token(t, "alice", time.Minute, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("fetched %d times for three tokens, want 1", n)
	}
	serveRotated.Store(true)
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, is.Claims("alice", time.Minute, nil))
	tok.Header["kid"] = "ec-1"
	// The rotated key has the key ID of the old one: a token signed with
	// it fails against the cached set until the set is fetched again.
	signed, err := tok.SignedString(rotated)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), signed); err == nil {
		t.Fatal("a token of a key the cached set lacks verified")
	}
	tok.Header["kid"] = "ec-2"
	signed, _ = tok.SignedString(rotated)
	// ec-2 is unknown: the set is fetched again, but holds the key as ec-1.
	if _, err := v.Verify(context.Background(), signed); err == nil {
		t.Fatal("a token naming a key absent from the set verified")
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("fetched %d times, want 2 (one more for the unknown key)", n)
	}
	tok.Header["kid"] = "ec-1"
	signed, _ = tok.SignedString(rotated)
	if _, err := v.Verify(context.Background(), signed); err != nil {
		t.Fatalf("the rotated key, fetched again, does not verify: %v", err)
	}
}

func TestTokenFrom(t *testing.T) {
	for _, c := range []struct {
		header, query, want string
	}{
		{"Bearer abc", "", "abc"},
		{"bearer abc", "", "abc"},
		{"Basic abc", "", ""},
		{"", "xyz", "xyz"},
		{"Bearer abc", "xyz", "abc"},
		{"Bearer ", "xyz", "xyz"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/kafka?access_token="+c.query, nil)
		if c.header != "" {
			r.Header.Set("Authorization", c.header)
		}
		if got := identity.TokenFrom(r); got != c.want {
			t.Errorf("%q %q: got %q, want %q", c.header, c.query, got, c.want)
		}
	}
}

func TestClaimValues(t *testing.T) {
	claims := identity.Claims{
		"s": "a*", "n": json.Number("42"), "f": 1.5, "i": float64(7), "big": json.Number("12345678901234567890"),
		"list": []any{"x", json.Number("3"), true, map[string]any{}}, "b": true, "o": map[string]any{"a": "b"},
		"nil": nil, "empty": []any{},
	}
	for name, want := range map[string][]string{
		"s": {"a*"}, "n": {"42"}, "f": {"1.5"}, "i": {"7"}, "big": {"12345678901234567890"},
		"list": {"x", "3"}, "b": nil, "o": nil, "nil": nil, "empty": {}, "missing": nil,
	} {
		if got := claims.Values(name); !slices.Equal(got, want) {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
}
