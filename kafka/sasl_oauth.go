package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/envoy-pubsub/gateway/config"
)

// OIDCRefreshBefore is how long before its expiry a token from the token
// endpoint is replaced: the next authentication (a new broker connection,
// or the re-authentication the broker asks for) fetches a fresh one.
const OIDCRefreshBefore = time.Minute

// oidcHTTPTimeout bounds one request to the token endpoint.
const oidcHTTPTimeout = 10 * time.Second

// oauthBearerMechanism authenticates with a token from c's token file or
// token endpoint, taken afresh for every authentication.
func oauthBearerMechanism(c *config.SASLCloud) (sasl.Mechanism, error) {
	var token func(context.Context) (string, error)
	if c.TokenFile != "" {
		f := &tokenFile{path: c.TokenFile}
		if _, err := f.token(); err != nil { // fail at start, not at the first connection
			return nil, err
		}
		token = func(context.Context) (string, error) { return f.token() }
	} else {
		if c.ClientSecret == "" {
			return nil, errors.New("kafka: sasl client_secret is not resolved")
		}
		token = oidcTokens(c)
	}
	return oauth.Oauth(func(ctx context.Context) (oauth.Auth, error) {
		t, err := token(ctx)
		if err != nil {
			return oauth.Auth{}, err
		}
		return oauth.Auth{Token: t}, nil
	}), nil
}

// tokenFile is a token kept in a file that something else renews: it is
// read again when the file's size or modification time changes. While the
// file cannot be read or is empty (in the middle of a rotation, say), the
// last token read stands.
type tokenFile struct {
	path string

	mu      sync.Mutex
	size    int64
	modTime time.Time
	cached  string
}

// token returns the file's token, reading the file again if it changed.
// Without a token read before, a file that cannot be read or is empty is an
// error that names the key, never the token.
func (f *tokenFile) token() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, err := f.read()
	if err != nil && f.cached != "" {
		return f.cached, nil
	}
	return t, err
}

// read returns the file's token, from the cache while the file is
// unchanged. Callers hold mu.
func (f *tokenFile) read() (string, error) {
	info, err := os.Stat(f.path)
	if err != nil {
		return "", fmt.Errorf("kafka: sasl.token_file: %w", err)
	}
	if f.cached != "" && info.Size() == f.size && info.ModTime().Equal(f.modTime) {
		return f.cached, nil
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return "", fmt.Errorf("kafka: sasl.token_file: %w", err)
	}
	t := string(bytes.TrimSpace(b))
	if t == "" {
		return "", fmt.Errorf("kafka: sasl.token_file: %s is empty", f.path)
	}
	f.cached, f.size, f.modTime = t, info.Size(), info.ModTime()
	return t, nil
}

// oidcTokens returns a source of tokens from an OAuth 2.0 client
// credentials grant, each reused until OIDCRefreshBefore its expiry.
func oidcTokens(c *config.SASLCloud) func(context.Context) (string, error) {
	cc := &clientcredentials.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret.Reveal(),
		TokenURL:     c.TokenEndpoint,
	}
	if c.Scope != "" {
		cc.Scopes = []string{c.Scope}
	}
	// The source outlives any one authentication; its requests are bounded
	// by the HTTP client's timeout.
	base := context.WithValue(context.Background(), oauth2.HTTPClient, &http.Client{Timeout: oidcHTTPTimeout})
	src := oauth2.ReuseTokenSourceWithExpiry(nil, cc.TokenSource(base), OIDCRefreshBefore)
	return func(context.Context) (string, error) {
		t, err := src.Token()
		if err != nil {
			return "", fmt.Errorf("kafka: sasl token_endpoint: %w", err)
		}
		return t.AccessToken, nil
	}
}
