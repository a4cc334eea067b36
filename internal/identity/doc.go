// Package identity authenticates the caller of a Nomos request: the principal
// (who asks) and, on action endpoints, the agent (which program asks on the
// principal's behalf).
//
// It owns every identity source Nomos accepts: bearer API keys, JWT bearer
// tokens (static keys or a JWKS URL), mTLS peer certificates mapped by SPIFFE
// ID or subject, a principal resolved by an earlier Caddy authentication
// handler, identity headers from a trusted proxy, and an explicit anonymous
// principal; and the agent HMAC signature (scheme v2, bound to method,
// request target, principal, timestamp, nonce and body) with its replay cache.
//
// The package is plain Go: it never imports Caddy or zap. The Caddy glue turns
// an *http.Request into an Input and maps every error, all of which wrap
// ErrAuth, to 401 auth_error. The environment is never an identity input; it
// always comes from configuration.
package identity
