package envoycheck

import (
	"strings"
	"testing"
)

// TestShippedBootstrapsKeepTokensOutOfLogs: both shipped bootstraps run
// jwt_authn before the plugin and log with a format that writes no token;
// each way of breaking that, in one place, is refused.
func TestShippedBootstrapsKeepTokensOutOfLogs(t *testing.T) {
	bootstraps := repositoryBootstraps(t)
	for _, name := range []string{exampleBootstrap, kubernetesBootstrap} {
		src := string(bootstraps[name])
		for _, must := range []string{"envoy.filters.http.jwt_authn", "from_params: [access_token]", "envoy_jwt_metadata: jwt_payload", "%PATH(NQ)%"} {
			if !strings.Contains(src, must) {
				t.Errorf("%s lacks %s", name, must)
			}
		}
		for _, c := range []struct {
			old, new, want string
		}{
			{"%PATH(NQ)%", "%REQ(:PATH)%", "%REQ(:PATH)"},
			{"%PATH(NQ)%", "%PATH%", "%PATH%"},
			{"%PATH(NQ)%", "%PATH(WQ:ORIG)%", "%PATH(WQ:ORIG)%"},
			{"%PATH(NQ)%", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)"},
			{"%PATH(NQ)%", "%PATH(NQ)% %REQ(Authorization)%", "%REQ(Authorization)"},
		} {
			rejectChanged(t, name, src, c.old, c.new, "access_log[0]", c.want)
		}
		// Without log_format, Envoy logs its default format.
		start := strings.LastIndexByte(src[:strings.Index(src, "log_format:")], '\n')
		end := strings.Index(src, "%PATH(NQ)%")
		end += strings.IndexByte(src[end:], '\n')
		rejectChanged(t, name, src, src[start:end], "", "access_log[0]", "no log_format: Envoy's default format logs the path with its query (?access_token=)")
	}
}

// TestIdentityNeedsJWTAuthnBeforeThePlugin breaks the jwt_authn wiring of the
// Kubernetes bootstrap (identity.required) in one place each.
func TestIdentityNeedsJWTAuthnBeforeThePlugin(t *testing.T) {
	src := string(repositoryBootstraps(t)[kubernetesBootstrap])
	lineOf := func(s string) int { return strings.LastIndexByte(src[:strings.Index(src, s)], '\n') + 1 }
	filterStart := lineOf("- name: envoy.filters.http.jwt_authn")
	golangStart := lineOf("- name: envoy.filters.http.golang")
	routerStart := lineOf("- name: envoy.filters.http.router")
	if filterStart < 0 || golangStart < filterStart || routerStart < golangStart {
		t.Fatal("the Kubernetes bootstrap no longer lists jwt_authn, golang and router in that order")
	}
	jwtAuthn := src[filterStart:golangStart]
	withoutJWT := src[:filterStart] + src[golangStart:]
	jwtAfter := src[:filterStart] + src[golangStart:routerStart] + jwtAuthn + src[routerStart:]
	for name, c := range map[string]struct{ doc, want string }{
		"no jwt_authn":            {withoutJWT, "no jwt_authn filter runs before the pub-sub filter"},
		"jwt_authn after":         {jwtAfter, "jwt_authn runs after the pub-sub filter"},
		"payload under other key": {strings.Replace(src, "payload_in_metadata: jwt_payload", "payload_in_metadata: claims", 1), `no jwt_authn provider sets payload_in_metadata "jwt_payload"`},
		"required without key":    {strings.Replace(src, "envoy_jwt_metadata: jwt_payload", "jwt: {jwks_file: /etc/jwks.json}", 1), "set identity.envoy_jwt_metadata"},
	} {
		err := check([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), "every upgrade gets 401") {
			t.Errorf("%s: the error does not say what identity.required makes of it: %v", name, err)
		}
	}
}

// rejectChanged replaces the one occurrence of old in src by new and expects
// the check to name every want.
func rejectChanged(t *testing.T, name, src, old, new string, wants ...string) {
	t.Helper()
	if n := strings.Count(src, old); n != 1 {
		t.Fatalf("%s: %q occurs %d times; the case must break exactly one place", name, old, n)
	}
	err := check([]byte(strings.Replace(src, old, new, 1)))
	if err == nil {
		t.Errorf("%s with %q: accepted", name, new)
		return
	}
	for _, want := range wants {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s with %q: error does not mention %q:\n%v", name, new, want, err)
		}
	}
}

// TestRouteRuleNamingAClaimNeedsIdentity: a per-route access rule that names
// a claim, under a plugin without identity, could never match.
func TestRouteRuleNamingAClaimNeedsIdentity(t *testing.T) {
	src := string(repositoryBootstraps(t)[exampleBootstrap])
	rejectChanged(t, exampleBootstrap, src, "                  identity:\n                    envoy_jwt_metadata: jwt_payload\n", "",
		`access[0].read[0]: {sub} names a claim, but identity is not configured`)
}
