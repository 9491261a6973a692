package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// mechanismNames lists the SASL mechanisms, for error messages.
const mechanismNames = "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM"

// SASLCloud are the keys of the SASL mechanisms of managed Kafka services.
//
// OAUTHBEARER takes its token from TokenFile, read again whenever the file
// changes (a sidecar or Kubernetes keeps it fresh), or from an OAuth 2.0
// client credentials grant at TokenEndpoint with ClientID and one source of
// the client secret: ClientSecret inline, ClientSecretFile, ClientSecretEnv
// (standalone server) or ClientSecretSecret (an Envoy generic_secret). The
// token is fetched again before it expires.
//
// AWS_MSK_IAM takes no keys: it signs with the AWS SDK's default credential
// chain (environment, shared files, web identity, container or instance
// role), in the region of the broker's MSK host name or AWS_REGION.
type SASLCloud struct {
	TokenFile          string `json:"token_file,omitempty"`
	TokenEndpoint      string `json:"token_endpoint,omitempty"`
	ClientID           string `json:"client_id,omitempty"`
	ClientSecret       Secret `json:"client_secret,omitempty"`
	ClientSecretFile   string `json:"client_secret_file,omitempty"`
	ClientSecretEnv    string `json:"client_secret_env,omitempty"`
	ClientSecretSecret string `json:"client_secret_secret,omitempty"`
	// Scope is the scope asked for, space-separated as OAuth's own
	// parameter; empty asks for none.
	Scope string `json:"scope,omitempty"`
}

// setKeys returns the keys of c that are set, in document order.
func (c *SASLCloud) setKeys() []string {
	var keys []string
	for _, k := range []struct {
		name string
		set  bool
	}{
		{"token_file", c.TokenFile != ""},
		{"token_endpoint", c.TokenEndpoint != ""},
		{"client_id", c.ClientID != ""},
		{"client_secret", c.ClientSecret != ""},
		{"client_secret_file", c.ClientSecretFile != ""},
		{"client_secret_env", c.ClientSecretEnv != ""},
		{"client_secret_secret", c.ClientSecretSecret != ""},
		{"scope", c.Scope != ""},
	} {
		if k.set {
			keys = append(keys, k.name)
		}
	}
	return keys
}

// absent fails when a key of c is set for a mechanism that has no use for
// it.
func (c *SASLCloud) absent(key string) error {
	if keys := c.setKeys(); len(keys) > 0 {
		return fmt.Errorf("config: %s.%s: only for mechanism OAUTHBEARER", key, keys[0])
	}
	return nil
}

// validateCloud checks the keys of OAUTHBEARER and AWS_MSK_IAM.
func (s *SASL) validateCloud(key string) error {
	for _, k := range []struct {
		name string
		set  bool
	}{
		{"username", s.Username != ""},
		{"password", s.Password != ""},
		{"password_file", s.PasswordFile != ""},
		{"password_env", s.PasswordEnv != ""},
		{"password_secret", s.PasswordSecret != ""},
	} {
		if k.set {
			return fmt.Errorf("config: %s.%s: not used by mechanism %s", key, k.name, s.Mechanism)
		}
	}
	if s.Mechanism == MechanismAWSMSKIAM {
		if keys := s.setKeys(); len(keys) > 0 {
			return fmt.Errorf("config: %s.%s: not used by mechanism AWS_MSK_IAM (it takes the AWS SDK's default credentials)", key, keys[0])
		}
		return nil
	}
	c := &s.SASLCloud
	switch {
	case c.TokenFile != "" && c.TokenEndpoint != "":
		return fmt.Errorf("config: %s: token_file and token_endpoint exclude each other", key)
	case c.TokenFile != "":
		if keys := c.setKeys(); len(keys) > 1 {
			return fmt.Errorf("config: %s.%s: not used with token_file", key, keys[1])
		}
		return nil
	case c.TokenEndpoint == "":
		return fmt.Errorf("config: %s: OAUTHBEARER needs token_file or token_endpoint", key)
	}
	u, err := url.Parse(c.TokenEndpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("config: %s.token_endpoint: %q is not an http(s) URL", key, c.TokenEndpoint)
	}
	if c.ClientID == "" {
		return fmt.Errorf("config: %s.client_id: required with token_endpoint", key)
	}
	sources := 0
	for _, set := range []bool{c.ClientSecret != "", c.ClientSecretFile != "", c.ClientSecretEnv != "", c.ClientSecretSecret != ""} {
		if set {
			sources++
		}
	}
	if sources != 1 {
		return fmt.Errorf("config: %s.client_secret: exactly one of client_secret, client_secret_file, client_secret_env, client_secret_secret is required", key)
	}
	return nil
}

// resolveCloud returns a copy of s whose ClientSecret holds the OIDC client
// secret from its source (inline, file, environment or the Envoy generic
// secret read through lookup); other mechanisms and token files have no
// secret to resolve. Errors name the key, never the value.
func (s *SASL) resolveCloud(lookup func(name string) (string, bool)) (*SASL, error) {
	r := *s
	c := &r.SASLCloud
	if s.Mechanism != MechanismOAuthBearer || c.TokenEndpoint == "" {
		return &r, nil
	}
	switch {
	case c.ClientSecret != "":
	case c.ClientSecretFile != "":
		b, err := os.ReadFile(c.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("sasl.client_secret_file: %w", err)
		}
		c.ClientSecret = Secret(strings.TrimRight(string(b), "\r\n"))
	case c.ClientSecretEnv != "":
		v, ok := os.LookupEnv(c.ClientSecretEnv)
		if !ok {
			return nil, fmt.Errorf("sasl.client_secret_env: environment variable %s is not set", c.ClientSecretEnv)
		}
		c.ClientSecret = Secret(v)
	case c.ClientSecretSecret != "":
		if lookup == nil {
			return nil, fmt.Errorf("sasl.client_secret_secret: secret %q needs Envoy's secret store; use client_secret_file or client_secret_env here", c.ClientSecretSecret)
		}
		v, ok := lookup(c.ClientSecretSecret)
		if !ok {
			return nil, fmt.Errorf("sasl.client_secret_secret: secret %q not found", c.ClientSecretSecret)
		}
		c.ClientSecret = Secret(v)
	}
	if c.ClientSecret == "" {
		return nil, errors.New("sasl.client_secret: empty client secret")
	}
	return &r, nil
}
