// Package identity knows who a client is: it verifies JSON Web Tokens
// against a JWK Set (RS256, ES256, EdDSA; exp, nbf, iss and aud checked) and
// carries the verified claims to the session, where access rules read them
// and the token's expiry bounds the session's life. It never logs a token
// or a claim.
package identity

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// Claims are the verified claims of a token: JSON values as decoded from its
// payload (numbers as json.Number or float64).
type Claims map[string]any

// Values returns the values claim name stands for in an access rule: a
// string, or a number in its shortest decimal form, as one value; a list as
// those of its elements that are strings or numbers. Any other claim, and a
// missing one, has no value.
func (c Claims) Values(name string) []string {
	v, ok := c[name]
	if !ok {
		return nil
	}
	if list, ok := v.([]any); ok {
		out := make([]string, 0, len(list))
		for _, e := range list {
			if s, ok := scalarText(e); ok {
				out = append(out, s)
			}
		}
		return out
	}
	if s, ok := scalarText(v); ok {
		return []string{s}
	}
	return nil
}

// scalarText returns the text of a string or number claim value.
func scalarText(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		if isInteger(string(x)) {
			return string(x), true // as written: beyond float64's precision too
		}
		f, err := x.Float64()
		if err != nil {
			return "", false
		}
		return floatText(f)
	case float64:
		return floatText(x)
	}
	return "", false
}

func floatText(f float64) (string, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", false
	}
	return strconv.FormatFloat(f, 'f', -1, 64), true
}

// Subject returns the sub claim, "" when it is absent or not a string.
func (c Claims) Subject() string {
	s, _ := c["sub"].(string)
	return s
}

// Expiry returns the time of the exp claim; ok is false when the claim is
// absent or not a number.
func (c Claims) Expiry() (exp time.Time, ok bool) {
	var secs float64
	switch x := c["exp"].(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return time.Time{}, false
		}
		secs = f
	case float64:
		secs = x
	default:
		return time.Time{}, false
	}
	if math.IsNaN(secs) || math.IsInf(secs, 0) {
		return time.Time{}, false
	}
	whole, frac := math.Modf(secs)
	return time.Unix(int64(whole), int64(frac*1e9)), true
}

// isInteger reports whether s is a JSON integer literal.
func isInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
