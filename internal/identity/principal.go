package identity

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// apiKey holds the digest of a configured key, never the key itself.
type apiKey struct {
	digest    [sha256.Size]byte
	principal string
}

// principal walks the identity sources in precedence order: bearer (API key,
// then JWT), mTLS, upstream auth, trusted header, anonymous. The first source
// the request presents decides; a presented but invalid credential fails and
// never falls through to a weaker source. A presented client certificate is
// checked even when a bearer token decides.
func (a *Authenticator) principal(ctx context.Context, in Input) (Result, error) {
	token, hasBearer, err := bearerToken(in.Header)
	if err != nil {
		return Result{}, err
	}
	cert, err := a.mtlsPrincipal(in.TLS)
	if err != nil {
		return Result{}, err
	}
	switch {
	case hasBearer:
		return a.bearer(ctx, token)
	case cert != "":
		return Result{Principal: cert, Method: MethodMTLS}, nil
	case in.UpstreamPrincipal != "":
		return named(in.UpstreamPrincipal, MethodUpstreamAuth)
	}
	p, ok, err := a.trustedPrincipal(in)
	if err != nil {
		return Result{}, err
	}
	if ok {
		return Result{Principal: p, Method: MethodTrustedHeader}, nil
	}
	if a.anonymous != "" {
		return Result{Principal: a.anonymous, Method: MethodAnonymous}, nil
	}
	return Result{}, principalError("no credentials")
}

func named(p, method string) (Result, error) {
	if checkName(p) != nil {
		return Result{}, principalError("invalid principal name")
	}
	return Result{Principal: p, Method: method}, nil
}

// bearerToken extracts a Bearer token. Other schemes (Basic, ...) belong to
// other handlers and are not a Nomos credential.
func bearerToken(h http.Header) (string, bool, error) {
	values := h.Values("Authorization")
	if len(values) == 0 {
		return "", false, nil
	}
	if len(values) > 1 {
		return "", false, principalError("duplicate authorization header")
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false, nil
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", false, principalError("empty bearer token")
	}
	return token, true, nil
}

func (a *Authenticator) bearer(ctx context.Context, token string) (Result, error) {
	if p, ok := a.lookupAPIKey(token); ok {
		return Result{Principal: p, Method: MethodAPIKey}, nil
	}
	if a.jwt == nil {
		return Result{}, principalError("unknown api key")
	}
	p, err := a.jwt.verify(ctx, token)
	if err != nil {
		return Result{}, err
	}
	return Result{Principal: p, Method: MethodJWT}, nil
}

// lookupAPIKey compares the token's digest with every key's digest in
// constant time and without an early exit, so neither timing nor length tells
// which key, if any, matched.
func (a *Authenticator) lookupAPIKey(token string) (string, bool) {
	digest := sha256.Sum256([]byte(token))
	match := -1
	for i := range a.apiKeys {
		eq := subtle.ConstantTimeCompare(digest[:], a.apiKeys[i].digest[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return "", false
	}
	return a.apiKeys[match].principal, true
}

// trustedPrincipal reads the proxy's principal header. Without a trusted
// proxy the header is ignored, never an error.
func (a *Authenticator) trustedPrincipal(in Input) (string, bool, error) {
	if a.trustedHeaders == nil || a.trustedHeaders.PrincipalHeader == "" || !in.FromTrustedProxy {
		return "", false, nil
	}
	v, ok, err := singleHeader(in.Header, a.trustedHeaders.PrincipalHeader)
	if err != nil || !ok {
		return "", false, principalErrorOrNil(err)
	}
	if checkName(v) != nil {
		return "", false, principalError("invalid principal name")
	}
	return v, true, nil
}

func principalErrorOrNil(err error) error {
	if err == nil {
		return nil
	}
	return principalError(err.Error())
}
