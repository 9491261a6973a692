package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/envoy-pubsub/gateway/config"
)

// SigningMethods are the only algorithms a token may be signed with:
// "none" and the HMAC family are refused, so that a public key can never be
// used as a shared secret.
var SigningMethods = []string{"RS256", "ES256", "EdDSA"}

// ErrInvalidToken is the error of every refused token: errors.Is finds it
// in the *TokenError of Verify.
var ErrInvalidToken = errors.New("invalid token")

// TokenError says why Verify refused a token, in words that quote neither
// the token nor its claims.
type TokenError struct {
	// Reason is the refusal in a few fixed words ("token expired").
	Reason string
}

func (e *TokenError) Error() string { return ErrInvalidToken.Error() + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalidToken) hold.
func (e *TokenError) Is(target error) bool { return target == ErrInvalidToken }

// Reasons a token is refused, as the text of Verify's errors.
const (
	reasonMalformed   = "malformed token"
	reasonAlgorithm   = "signing algorithm not allowed (RS256, ES256 or EdDSA)"
	reasonSignature   = "signature not verified by any key of the JWK Set"
	reasonExpired     = "token expired"
	reasonNotYetValid = "token not valid yet"
	reasonNoExpiry    = "token has no exp claim"
	reasonIssuer      = "wrong issuer"
	reasonAudience    = "wrong audience"
)

// Timeouts of a jwks_uri.
const (
	// jwksFetchTimeout bounds one fetch of the JWK Set.
	jwksFetchTimeout = 10 * time.Second
	// unknownKeyRefresh is how often, at most, a token naming a key the
	// set lacks makes the set be fetched again.
	unknownKeyRefresh = 30 * time.Second
)

// Verifier verifies tokens against one identity.jwt configuration. It is
// safe for concurrent use.
type Verifier struct {
	parser *jwt.Parser
	log    *slog.Logger
	uri    string
	every  time.Duration

	mu     sync.Mutex
	keys   keyfunc.Keyfunc // nil until a jwks_uri is first fetched
	ctx    context.Context // ends the refreshes of a jwks_uri
	cancel context.CancelFunc
}

// VerifierOption configures a Verifier.
type VerifierOption func(*[]jwt.ParserOption)

// Clock makes the verifier judge exp and nbf by now instead of the system
// clock. Default time.Now.
func Clock(now func() time.Time) VerifierOption {
	return func(p *[]jwt.ParserOption) { *p = append(*p, jwt.WithTimeFunc(now)) }
}

// NewVerifier returns the verifier of c, logging JWK Set fetch failures to
// log. A jwks_file is read now: an unreadable or invalid file is an error
// naming the key. A jwks_uri is fetched on the first token, then every
// jwks_refresh_interval; Close stops the refreshes.
func NewVerifier(c *config.JWT, log *slog.Logger, opts ...VerifierOption) (*Verifier, error) {
	if log == nil {
		log = slog.Default()
	}
	v := &Verifier{log: log, uri: c.JWKSURI, every: c.JWKSRefreshInterval.Duration()}
	popts := parserOptions(c)
	for _, o := range opts {
		o(&popts)
	}
	v.parser = jwt.NewParser(popts...)
	v.ctx, v.cancel = context.WithCancel(context.Background())
	if c.JWKSFile != "" {
		raw, err := os.ReadFile(c.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("identity.jwt.jwks_file: %w", err)
		}
		if !json.Valid(raw) {
			return nil, fmt.Errorf("identity.jwt.jwks_file: %s is not JSON", c.JWKSFile)
		}
		keys, err := keyfunc.NewJWKSetJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("identity.jwt.jwks_file: %s: not a usable JWK Set: %w", c.JWKSFile, err)
		}
		v.keys = keys
	}
	return v, nil
}

// parserOptions are the checks every token passes.
func parserOptions(c *config.JWT) []jwt.ParserOption {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(SigningMethods),
		jwt.WithExpirationRequired(),
		jwt.WithJSONNumber(),
	}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	if len(c.Audiences) > 0 {
		opts = append(opts, jwt.WithAudience(c.Audiences...))
	}
	return opts
}

// Close stops the refreshes of a jwks_uri.
func (v *Verifier) Close() { v.cancel() }

// Verify checks token's signature against the JWK Set and its exp, nbf,
// iss and aud claims, and returns its claims. A refused token is a
// *TokenError; other errors (a JWK Set that cannot be fetched) say so.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	keys, err := v.keySet()
	if err != nil {
		return nil, err
	}
	claims := jwt.MapClaims{}
	parsed, err := v.parser.ParseWithClaims(token, claims, keys.KeyfuncCtx(ctx))
	if err != nil {
		reason := reasonOf(err)
		if reason == reasonSignature && parsed != nil && !slices.Contains(SigningMethods, fmt.Sprint(parsed.Header["alg"])) {
			reason = reasonAlgorithm
		}
		v.log.Debug("identity: token refused", "reason", reason)
		return nil, &TokenError{Reason: reason}
	}
	return Claims(claims), nil
}

// keySet returns the JWK Set, fetching a jwks_uri the first time.
func (v *Verifier) keySet() (keyfunc.Keyfunc, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keys != nil {
		return v.keys, nil
	}
	if err := v.ctx.Err(); err != nil {
		return nil, fmt.Errorf("identity: verifier closed: %w", err)
	}
	uri := v.uri
	keys, err := keyfunc.NewDefaultOverrideCtx(v.ctx, []string{uri}, keyfunc.Override{
		HTTPTimeout:       jwksFetchTimeout,
		RefreshInterval:   v.every,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(unknownKeyRefresh), 1),
		RateLimitWaitMax:  time.Second,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				v.log.Warn("identity: fetching the JWK Set failed", "jwks_uri", uri, "err", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("identity.jwt.jwks_uri: %w", err)
	}
	v.keys = keys
	return keys, nil
}

// reasonOf names why the jwt package refused a token, in fixed words.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return reasonMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, keyfunc.ErrKeyfunc):
		return reasonSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return reasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return reasonNotYetValid
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return reasonNoExpiry
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return reasonIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return reasonAudience
	}
	return reasonSignature
}
