package identity

import (
	"net/http"
	"strings"
)

// AccessTokenParam is the query parameter that carries a token where a
// client cannot set headers (browsers opening a WebSocket); Envoy's
// jwt_authn reads the same name.
const AccessTokenParam = "access_token"

// TokenFrom returns the bearer token of r: the Authorization header's
// (scheme Bearer, any case) or else the access_token query parameter's; ""
// when there is none.
func TokenFrom(r *http.Request) string {
	if scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if t := strings.TrimSpace(token); t != "" {
			return t
		}
	}
	return r.URL.Query().Get(AccessTokenParam)
}
