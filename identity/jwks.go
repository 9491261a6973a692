package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
)

// Fetching a jwks_uri.
const (
	// jwksFetchTimeout bounds one fetch of the JWK Set.
	jwksFetchTimeout = 10 * time.Second
	// unknownKeyRefresh is how often, at most, a token naming a key the
	// set lacks makes the set be fetched again.
	unknownKeyRefresh = 30 * time.Second
	// jwksRetry is how long after a failed fetch no other is tried: tokens
	// meanwhile use the set last fetched, or are refused when there is
	// none.
	jwksRetry = 5 * time.Second
	// maxJWKSBytes bounds the JWK Set document a jwks_uri may serve.
	maxJWKSBytes = 1 << 20
)

// ErrJWKSUnavailable is the error of Verify when the JWK Set of a jwks_uri
// has never been fetched: the token cannot be verified, whatever it holds.
var ErrJWKSUnavailable = errors.New("identity.jwt.jwks_uri: the JWK Set cannot be fetched")

// keySet is one parsed JWK Set. Its pointer tells sets apart: a fetch
// makes a new one.
type keySet struct{ keyfunc.Keyfunc }

// remoteKeys is the JWK Set of a jwks_uri, cached. The gateway fetches it
// itself, without a library's background goroutine (inside Envoy a panic
// in a goroutine nobody recovers ends the proxy): the first token fetches
// it and waits; a token that finds it older than jwks_refresh_interval
// uses it and starts one fetch in a goroutine of the gateway's, which
// recovers; a token naming a key the set lacks fetches it again, and waits,
// at most once every unknownKeyRefresh. One fetch runs at a time; between
// tokens no goroutine runs.
type remoteKeys struct {
	uri    string
	every  time.Duration
	client *http.Client
	log    *slog.Logger
	ctx    context.Context // ends fetches when the verifier closes

	mu       sync.Mutex
	keys     *keySet       // nil until a fetch succeeds
	fetched  time.Time     // when keys were fetched
	tried    time.Time     // when the last fetch began
	failed   error         // of the last fetch; nil when it succeeded
	unknown  time.Time     // when a token naming an unknown key last made a fetch
	fetching chan struct{} // closed when the running fetch ends; nil when none runs
}

func newRemoteKeys(ctx context.Context, uri string, every time.Duration, log *slog.Logger) *remoteKeys {
	transport := &http.Transport{Proxy: http.ProxyFromEnvironment}
	if t, ok := http.DefaultTransport.(*http.Transport); ok {
		transport = t.Clone() // the standard timeouts
	}
	transport.DisableKeepAlives = true // fetches are minutes apart: keep no idle connection
	return &remoteKeys{uri: uri, every: every, log: log, ctx: ctx,
		client: &http.Client{Timeout: jwksFetchTimeout, Transport: transport}}
}

// get returns the set to verify a token with, fetching it first when there
// is none yet or, with unknownKey, when the token names a key the set
// lacks (and no such fetch was made within unknownKeyRefresh). It waits
// for a fetch another token started, until ctx ends.
func (r *remoteKeys) get(ctx context.Context, unknownKey bool) (*keySet, error) {
	for {
		r.mu.Lock()
		now := time.Now()
		retrying := r.failed != nil && now.Sub(r.tried) < jwksRetry
		wait := r.keys == nil || (unknownKey && now.Sub(r.unknown) >= unknownKeyRefresh)
		if !wait || (retrying && r.fetching == nil) {
			keys, failed := r.keys, r.failed
			if keys != nil && now.Sub(r.fetched) >= r.every && r.fetching == nil && !retrying {
				r.begin(now)
				go r.fetchRecovered()
			}
			r.mu.Unlock()
			if keys == nil {
				return nil, fmt.Errorf("%w: %w", ErrJWKSUnavailable, failed)
			}
			return keys, nil
		}
		if done := r.fetching; done != nil {
			r.mu.Unlock()
			select {
			case <-done:
				unknownKey = false // the set was fetched just now
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if unknownKey {
			r.unknown = now
		}
		r.begin(now)
		r.mu.Unlock()
		r.fetch()
		unknownKey = false
	}
}

// begin notes that a fetch starts now; r.mu is held.
func (r *remoteKeys) begin(now time.Time) {
	r.tried = now
	r.fetching = make(chan struct{})
}

// fetchRecovered is fetch in a goroutine of its own.
func (r *remoteKeys) fetchRecovered() {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("identity: panic refreshing the JWK Set", "jwks_uri", r.uri, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	r.fetch()
}

// fetch fetches the set and ends the fetch begin started: a set that
// parses replaces the cached one; a failure is logged and keeps it.
func (r *remoteKeys) fetch() {
	keys, err := r.download()
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.fetching)
	r.fetching = nil
	if err != nil {
		r.failed = err
		r.log.Warn("identity: fetching the JWK Set failed", "jwks_uri", r.uri, "err", err)
		return
	}
	r.keys, r.fetched, r.failed = keys, time.Now(), nil
}

// download fetches and parses the JWK Set; a panic of the parser is an
// error.
func (r *remoteKeys) download() (keys *keySet, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("identity: panic reading the JWK Set", "jwks_uri", r.uri, "panic", p, "stack", string(debug.Stack()))
			keys, err = nil, fmt.Errorf("reading the JWK Set panicked: %v", p)
		}
	}()
	ctx, cancel := context.WithTimeout(r.ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxJWKSBytes {
		return nil, fmt.Errorf("the JWK Set is larger than %d bytes", maxJWKSBytes)
	}
	return parseKeySet(raw)
}

// parseKeySet parses a JWK Set document.
func parseKeySet(raw []byte) (*keySet, error) {
	kf, err := keyfunc.NewJWKSetJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("not a usable JWK Set: %w", err)
	}
	return &keySet{kf}, nil
}
