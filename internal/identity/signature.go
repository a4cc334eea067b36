package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// SignatureV2Prefix starts every v2 X-Nomos-Agent-Signature value; the
// version is explicit so a later scheme cannot be confused with this one.
const SignatureV2Prefix = "v2="

// signatureV2Tag is the first line of the v2 string to sign.
const signatureV2Tag = "nomos-agent-signature-v2"

// Nonce bounds: 16 characters of base64url or hex carry at least 64 random
// bits; 64 keeps the replay cache's memory per entry small.
const (
	minNonceLen = 16
	maxNonceLen = 64
)

// SignedRequest is everything a v2 agent signature covers.
type SignedRequest struct {
	// Method is the HTTP method, e.g. POST.
	Method string
	// Target is the request target exactly as the client sent it in the
	// request line (path and query, e.g. /action), before any proxy or
	// Caddy rewrite such as handle_path strips a prefix.
	Target string
	// Principal is the principal the request's credential (API key, JWT,
	// client certificate, ...) authenticates.
	Principal string
	// Agent is the agent id, as in X-Nomos-Agent-Id.
	Agent string
	// Timestamp is X-Nomos-Timestamp: Unix seconds, decimal digits.
	Timestamp string
	// Nonce is X-Nomos-Nonce: 16 to 64 characters of A-Z, a-z, 0-9, - and _,
	// never reused by the agent.
	Nonce string
	// Body is the exact raw request body.
	Body []byte
}

// StringToSign returns the v2 string to sign: eight lines joined by "\n"
// (no trailing newline), the tag "nomos-agent-signature-v2", then method,
// target, principal, agent, timestamp, nonce and the lowercase hex SHA-256
// of the body. No field can hold a newline (Verify refuses such values), so
// the fields cannot be shifted into one another.
func (s SignedRequest) StringToSign() string {
	sum := sha256.Sum256(s.Body)
	return strings.Join([]string{signatureV2Tag, s.Method, s.Target, s.Principal, s.Agent,
		s.Timestamp, s.Nonce, hex.EncodeToString(sum[:])}, "\n")
}

// Sign returns the X-Nomos-Agent-Signature value for req: "v2=" and the
// lowercase hex HMAC-SHA256 of req.StringToSign() under the agent's secret.
// Clients and tests use it; the server verifies with the same code.
func Sign(secret string, req SignedRequest) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(req.StringToSign()))
	return SignatureV2Prefix + hex.EncodeToString(m.Sum(nil))
}

// SignLegacyBody returns a legacy body signature: the lowercase hex
// HMAC-SHA256 of the raw body, or of "<timestamp>.<raw body>" when timestamp
// is not empty. It binds neither method, path nor principal, so servers
// accept it only with legacy_body_signatures; kept for those deployments.
func SignLegacyBody(secret, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(legacyMessage(timestamp, body))
	return hex.EncodeToString(m.Sum(nil))
}

func legacyMessage(timestamp string, body []byte) []byte {
	if timestamp == "" {
		return body
	}
	return append([]byte(timestamp+"."), body...)
}

// validNonce accepts 16 to 64 characters of the base64url alphabet (which
// includes hex and UUIDs).
func validNonce(s string) bool {
	if len(s) < minNonceLen || len(s) > maxNonceLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validToken accepts an HTTP method: a non-empty RFC 9110 token.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validTarget accepts a request target without control characters or
// spaces, which HTTP servers refuse anyway; a newline would break the
// string to sign into extra lines.
func validTarget(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}
