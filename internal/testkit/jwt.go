package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Issuer is a token issuer for tests: an RSA, an ECDSA P-256 and an
// Ed25519 key, published as a JWK Set (public keys only) in a file.
type Issuer struct {
	// Name is the iss of its tokens; Audience their aud.
	Name, Audience string
	// JWKS is the JWK Set of its public keys, JWKSFile the file holding it.
	JWKS     []byte
	JWKSFile string
	keys     map[string]crypto.Signer // by signing method
}

// Key IDs of an Issuer's keys, by signing method.
var issuerKIDs = map[string]string{"RS256": "rsa-1", "ES256": "ec-1", "EdDSA": "ed-1"}

// NewIssuer makes the keys and writes their JWK Set to a file of the
// test's temporary directory.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &Issuer{Name: "https://id.test", Audience: "pubsub",
		keys: map[string]crypto.Signer{"RS256": rsaKey, "ES256": ecKey, "EdDSA": edKey}}
	is.JWKS = PublicJWKS(t, map[string]crypto.PublicKey{
		"RS256": rsaKey.Public(), "ES256": ecKey.Public(), "EdDSA": edKey.Public(),
	})
	is.JWKSFile = filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(is.JWKSFile, is.JWKS, 0o600); err != nil {
		t.Fatal(err)
	}
	return is
}

// PublicJWKS returns the JWK Set of keys (by signing method), each with the
// key ID and alg an Issuer gives it.
func PublicJWKS(t testing.TB, keys map[string]crypto.PublicKey) []byte {
	t.Helper()
	var set jwkset.JWKSMarshal
	for method, key := range keys {
		jwk, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			KID: issuerKIDs[method], ALG: jwkset.ALG(method), USE: jwkset.UseSig,
		}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Claims returns the claims of a token for sub valid for life from now,
// with the issuer's iss and aud, plus extra.
func (is *Issuer) Claims(sub string, life time.Duration, extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"iss": is.Name, "aud": is.Audience, "sub": sub, "exp": time.Now().Add(life).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// Sign returns claims signed with the issuer's key for method (RS256,
// ES256 or EdDSA), naming its key ID.
func (is *Issuer) Sign(t testing.TB, method string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(method), claims)
	tok.Header["kid"] = issuerKIDs[method]
	s, err := tok.SignedString(is.keys[method])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// PublicKeyPEM returns the PKIX PEM of the issuer's public key for method:
// what an attacker would try as the secret of an HMAC token.
func (is *Issuer) PublicKeyPEM(t testing.TB, method string) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(is.keys[method].Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// KeyID returns the key ID of the issuer's key for method.
func (is *Issuer) KeyID(method string) string { return issuerKIDs[method] }

// Token returns an RS256 token for sub valid for life, with extra claims.
func (is *Issuer) Token(t testing.TB, sub string, life time.Duration, extra map[string]any) string {
	t.Helper()
	return is.Sign(t, "RS256", is.Claims(sub, life, extra))
}

// IdentityYAML returns the identity section that verifies the issuer's
// tokens, required or not.
func (is *Issuer) IdentityYAML(required bool) string {
	return fmt.Sprintf("identity:\n  required: %t\n  jwt: {jwks_file: %q, issuer: %q, audiences: [%q]}\n",
		required, is.JWKSFile, is.Name, is.Audience)
}
