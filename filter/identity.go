package filter

import "github.com/envoy-pubsub/gateway/identity"

// JWTAuthnNamespace is the dynamic metadata namespace of Envoy's jwt_authn
// filter, where its payload_in_metadata puts the verified token's payload.
const JWTAuthnNamespace = "envoy.filters.http.jwt_authn"

// bodyIdentityRequired answers an upgrade without a verified identity
// where identity.required is set.
const bodyIdentityRequired = "401 Unauthorized: this route needs a verified token (Authorization: Bearer or ?access_token=)\n"

// claims returns the payload jwt_authn verified for this request, from the
// dynamic metadata key identity.envoy_jwt_metadata names: nil where no
// identity is configured, empty where the request carried no verified
// token (an anonymous session of a listener with identity).
func (f *filter) claims() identity.Claims {
	id := f.cfg.doc.Identity
	if id == nil {
		return nil
	}
	if id.EnvoyJWTMetadata != "" {
		md := f.callbacks.StreamInfo().DynamicMetadata().Get(JWTAuthnNamespace)
		if payload, ok := md[id.EnvoyJWTMetadata].(map[string]interface{}); ok && len(payload) > 0 {
			return identity.Claims(payload)
		}
	}
	return identity.Claims{}
}

// identityRequired reports whether an upgrade without claims is refused.
func (f *filter) identityRequired() bool {
	return f.cfg.doc.Identity != nil && f.cfg.doc.Identity.Required
}
