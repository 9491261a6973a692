package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

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

// Verifier verifies tokens against one identity.jwt configuration. It is
// safe for concurrent use.
type Verifier struct {
	parser *jwt.Parser
	log    *slog.Logger
	file   *keySet     // the JWK Set of a jwks_file
	remote *remoteKeys // that of a jwks_uri
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
// naming the key. A jwks_uri is fetched on the first token, and again by
// the first token after jwks_refresh_interval or one naming a key the set
// lacks (see remoteKeys); Close ends its fetches.
func NewVerifier(c *config.JWT, log *slog.Logger, opts ...VerifierOption) (*Verifier, error) {
	if log == nil {
		log = slog.Default()
	}
	popts := parserOptions(c)
	for _, o := range opts {
		o(&popts)
	}
	v := &Verifier{log: log, parser: jwt.NewParser(popts...)}
	if c.JWKSFile != "" {
		raw, err := os.ReadFile(c.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("identity.jwt.jwks_file: %w", err)
		}
		if !json.Valid(raw) {
			return nil, fmt.Errorf("identity.jwt.jwks_file: %s is not JSON", c.JWKSFile)
		}
		if v.file, err = parseKeySet(raw); err != nil {
			return nil, fmt.Errorf("identity.jwt.jwks_file: %s: %w", c.JWKSFile, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	if c.JWKSURI != "" {
		v.remote = newRemoteKeys(ctx, c.JWKSURI, c.JWKSRefreshInterval.Duration(), log)
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

// Close ends the fetches of a jwks_uri.
func (v *Verifier) Close() { v.cancel() }

// Verify checks token's signature against the JWK Set and its exp, nbf,
// iss and aud claims, and returns its claims. A refused token is a
// *TokenError; other errors (a JWK Set that cannot be fetched) say so. A
// panic of the libraries it uses refuses the token and is logged (without
// the token).
func (v *Verifier) Verify(ctx context.Context, token string) (claims Claims, err error) {
	defer func() {
		if p := recover(); p != nil {
			v.log.Error("identity: panic verifying a token", "panic", p, "stack", string(debug.Stack()))
			claims, err = nil, &TokenError{Reason: reasonMalformed}
		}
	}()
	keys, err := v.keySet(ctx, false)
	if err != nil {
		return nil, err
	}
	parsed, mc, err := v.parse(ctx, keys, token)
	if errors.Is(err, jwkset.ErrKeyNotFound) && v.remote != nil {
		// A key the set lacks (a rotated key): fetch the set again, at
		// most every unknownKeyRefresh, and try once more.
		if again, ferr := v.keySet(ctx, true); ferr == nil && again != keys {
			parsed, mc, err = v.parse(ctx, again, token)
		}
	}
	if err != nil {
		reason := reasonOf(err)
		if reason == reasonSignature && parsed != nil && !slices.Contains(SigningMethods, fmt.Sprint(parsed.Header["alg"])) {
			reason = reasonAlgorithm
		}
		v.log.Debug("identity: token refused", "reason", reason)
		return nil, &TokenError{Reason: reason}
	}
	return Claims(mc), nil
}

// parse verifies token with keys.
func (v *Verifier) parse(ctx context.Context, keys *keySet, token string) (*jwt.Token, jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	parsed, err := v.parser.ParseWithClaims(token, claims, keys.KeyfuncCtx(ctx))
	return parsed, claims, err
}

// keySet returns the JWK Set: the file's, or the jwks_uri's (see
// remoteKeys.get).
func (v *Verifier) keySet(ctx context.Context, unknownKey bool) (*keySet, error) {
	if v.remote == nil {
		return v.file, nil
	}
	return v.remote.get(ctx, unknownKey)
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
