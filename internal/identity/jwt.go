package identity

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/caddy-nomos/nomos/policy/action"
)

// jwtLeeway tolerates small clock differences on exp, nbf and iat.
const jwtLeeway = 30 * time.Second

// JWTConfig enables JWT bearer tokens (RS256, ES256 or EdDSA).
type JWTConfig struct {
	// Issuer must equal the token's iss claim. Required.
	Issuer string
	// Audiences must intersect the token's aud claim. Required.
	Audiences []string
	// PrincipalClaim names the string claim holding the principal.
	// Default: "sub".
	PrincipalClaim string
	// StaticKeys are PEM public keys or certificates (RSA of 2048 bits or
	// more, ECDSA P-256, Ed25519).
	StaticKeys [][]byte
	// JWKSURL is fetched for verification keys; https, or http to a loopback
	// host only. At least one of StaticKeys and JWKSURL is required.
	JWKSURL string
	// JWKSRefresh is the period of the background refresh. Default: 15m.
	JWKSRefresh time.Duration
	// HTTPClient fetches the JWKS. Default: a client with a 10s timeout.
	HTTPClient *http.Client `json:"-"`
}

// jwtVerifier checks JWT bearer tokens.
type jwtVerifier struct {
	issuer    string
	audiences jwt.Audience
	claim     string
	static    []verifyKey
	jwks      *jwksCache
	clock     func() time.Time
}

func newJWTVerifier(cfg JWTConfig, clock func() time.Time) (*jwtVerifier, error) {
	if err := checkJWTConfig(cfg); err != nil {
		return nil, err
	}
	static, err := parseStaticKeys(cfg.StaticKeys)
	if err != nil {
		return nil, err
	}
	v := &jwtVerifier{issuer: cfg.Issuer, audiences: cfg.Audiences, claim: cfg.PrincipalClaim, static: static, clock: clock}
	if v.claim == "" {
		v.claim = DefaultPrincipalClaim
	}
	if cfg.JWKSURL != "" {
		v.jwks = newJWKSCache(cfg, clock)
	}
	return v, nil
}

func checkJWTConfig(cfg JWTConfig) error {
	switch {
	case cfg.Issuer == "":
		return errors.New("issuer is required")
	case len(cfg.Audiences) == 0 || slices.Contains(cfg.Audiences, ""):
		return errors.New("at least one non-empty audience is required")
	case len(cfg.StaticKeys) == 0 && cfg.JWKSURL == "":
		return errors.New("static keys or a jwks url is required")
	case cfg.JWKSRefresh < 0:
		return errors.New("jwks refresh must not be negative")
	}
	if cfg.JWKSURL != "" {
		return checkJWKSURL(cfg.JWKSURL)
	}
	return nil
}

// checkJWKSURL refuses plain http except to a loopback host: keys fetched
// in clear text could be swapped by anyone on the path.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("invalid jwks url %q", raw)
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	}
	return fmt.Errorf("jwks url %q must use https (http only to a loopback host)", raw)
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// verify returns the principal of a valid token.
func (v *jwtVerifier) verify(ctx context.Context, token string) (string, error) {
	alg, kid, err := peekHeader(token)
	if err != nil {
		return "", err
	}
	tok, err := jwt.ParseSigned(token, allowedAlgs())
	if err != nil {
		return "", principalError("invalid bearer token")
	}
	payload, err := v.verifySignature(ctx, tok, alg, kid)
	if err != nil {
		return "", err
	}
	return v.principalFrom(payload)
}

// peekHeader reads alg and kid from the unverified header, only to pick a
// key and to explain a rejection.
func peekHeader(token string) (alg, kid string, err error) {
	head, _, ok := strings.Cut(token, ".")
	if !ok || strings.Count(token, ".") != 2 {
		return "", "", principalError("invalid bearer token")
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return "", "", principalError("invalid bearer token")
	}
	if err := action.CheckStrictJSON(raw); err != nil {
		return "", "", strictJWTError(err)
	}
	var h struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if json.Unmarshal(raw, &h) != nil {
		return "", "", principalError("invalid bearer token")
	}
	if !slices.Contains(allowedAlgs(), jose.SignatureAlgorithm(h.Alg)) {
		return "", "", principalError("jwt algorithm not allowed")
	}
	return h.Alg, h.Kid, nil
}

// verifySignature tries the candidate keys. A kid the cached JWKS does not
// know triggers one rate-limited refetch, which is how key rotation is
// picked up between periodic refreshes.
func (v *jwtVerifier) verifySignature(ctx context.Context, tok *jwt.JSONWebToken, alg, kid string) ([]byte, error) {
	keys := v.candidates(alg, kid)
	if v.jwks != nil && missesKid(keys, kid) {
		v.jwks.refreshOnMiss(ctx)
		keys = v.candidates(alg, kid)
	}
	if len(keys) == 0 {
		return nil, principalError("jwt signing key not found")
	}
	for _, k := range keys {
		var payload json.RawMessage
		if err := tok.Claims(k.key, &payload); err == nil {
			return payload, nil
		}
	}
	return nil, principalError("jwt signature invalid")
}

// missesKid reports whether no candidate can be the token's key as named:
// none at all, or none from the JWKS with the token's kid.
func missesKid(keys []verifyKey, kid string) bool {
	if kid == "" {
		return len(keys) == 0
	}
	return !slices.ContainsFunc(keys, func(k verifyKey) bool { return k.kid == kid })
}

func (v *jwtVerifier) candidates(alg, kid string) []verifyKey {
	var out []verifyKey
	for _, k := range v.static {
		if k.fits(alg) {
			out = append(out, k)
		}
	}
	if v.jwks == nil {
		return out
	}
	for _, k := range v.jwks.keys() {
		if k.fits(alg) && (kid == "" || k.kid == kid) {
			out = append(out, k)
		}
	}
	return out
}

// strictJWTError explains a header or payload that fails
// action.CheckStrictJSON. Duplicate keys get their own reason: with two
// "sub" claims, one reader takes the first and another the last.
func strictJWTError(err error) error {
	if errors.Is(err, action.ErrDuplicateKey) {
		return principalError("jwt has duplicate keys")
	}
	return principalError("invalid bearer token")
}

// principalFrom validates the registered claims and reads the principal.
// The payload is checked strictly first: the claims struct matches keys
// case-insensitively while the principal claim is read exactly.
func (v *jwtVerifier) principalFrom(payload []byte) (string, error) {
	if err := action.CheckStrictJSON(payload); err != nil {
		return "", strictJWTError(err)
	}
	var claims jwt.Claims
	var all map[string]any
	if json.Unmarshal(payload, &claims) != nil || json.Unmarshal(payload, &all) != nil {
		return "", principalError("invalid jwt claims")
	}
	if err := v.validate(claims); err != nil {
		return "", err
	}
	p, _ := all[v.claim].(string)
	if p == "" {
		return "", principalError("jwt principal claim missing or not a string")
	}
	if checkName(p) != nil {
		return "", principalError("invalid principal name")
	}
	return p, nil
}

func (v *jwtVerifier) validate(c jwt.Claims) error {
	if c.Expiry == nil {
		return principalError("jwt has no exp claim")
	}
	want := jwt.Expected{Issuer: v.issuer, AnyAudience: v.audiences, Time: v.clock()}
	err := c.ValidateWithLeeway(want, jwtLeeway)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return principalError("jwt issuer mismatch")
	case errors.Is(err, jwt.ErrInvalidAudience):
		return principalError("jwt audience mismatch")
	case errors.Is(err, jwt.ErrExpired):
		return principalError("jwt expired")
	case errors.Is(err, jwt.ErrNotValidYet):
		return principalError("jwt not yet valid")
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return principalError("jwt issued in the future")
	}
	return principalError("invalid jwt claims")
}
