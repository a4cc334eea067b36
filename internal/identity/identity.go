package identity

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"sync"
	"time"
)

// ErrAuth is wrapped by every authentication failure. The glue maps it to
// HTTP 401 with the code auth_error.
var ErrAuth = errors.New("auth_error")

// Identity sources, as reported in Result.Method.
const (
	MethodAPIKey        = "api_key"
	MethodJWT           = "jwt"
	MethodMTLS          = "mtls"
	MethodUpstreamAuth  = "upstream_auth"
	MethodTrustedHeader = "trusted_header"
	MethodAnonymous     = "anonymous"
)

// Request headers read by the agent authentication.
const (
	HeaderAgentID        = "X-Nomos-Agent-Id"
	HeaderAgentSignature = "X-Nomos-Agent-Signature"
	HeaderTimestamp      = "X-Nomos-Timestamp"
	HeaderNonce          = "X-Nomos-Nonce"
)

// Input is what the authenticator sees of one request.
type Input struct {
	// Header holds the request headers.
	Header http.Header
	// Body is the exact raw request body the agent signature covers.
	Body []byte
	// Method is the HTTP method the client sent; a v2 signature covers it.
	Method string
	// Target is the request target exactly as the client sent it (path and
	// query), before any rewrite; a v2 signature covers it.
	Target string
	// TLS is the connection state, nil for plain HTTP.
	TLS *tls.ConnectionState
	// UpstreamPrincipal is the user id an earlier Caddy authentication
	// handler resolved (for example {http.auth.user.id}), empty if none.
	UpstreamPrincipal string
	// FromTrustedProxy reports that the connection comes from one of Caddy's
	// trusted_proxies; only then are trusted identity headers honoured.
	FromTrustedProxy bool
}

// Result is an authenticated identity.
type Result struct {
	// Principal is who asks.
	Principal string
	// Agent is the authenticated agent, empty when none was presented and
	// none is required.
	Agent string
	// Method names the source of Principal: one of the Method constants.
	Method string
}

// Authenticator authenticates requests. It is safe for concurrent use.
type Authenticator struct {
	apiKeys        []apiKey
	agents         map[string][]byte
	requireAgent   bool
	requireTS      bool
	legacy         bool
	skew           time.Duration
	replay         ReplayStore
	jwt            *jwtVerifier
	mtls           *MTLSConfig
	trustedHeaders *TrustedHeaderConfig
	anonymous      string
	anonymousAgent string
	clock          func() time.Time
	startOnce      sync.Once
}

// Authenticate authenticates the principal and the agent of an action
// request. An agent is required when Config.RequireAgent is set; a presented
// agent credential is always verified.
func (a *Authenticator) Authenticate(ctx context.Context, in Input) (Result, error) {
	res, err := a.AuthenticatePrincipal(ctx, in)
	if err != nil {
		return Result{}, err
	}
	return a.AuthenticateAgent(ctx, in, res)
}

// AuthenticateAgent completes Authenticate for principal, the result of
// AuthenticatePrincipal on the same request (whose body, which an agent
// signature covers, may have been read since): it verifies the agent.
func (a *Authenticator) AuthenticateAgent(ctx context.Context, in Input, principal Result) (Result, error) {
	agent, err := a.agent(ctx, in, principal.Principal, principal.Method == MethodAnonymous)
	if err != nil {
		return Result{}, err
	}
	principal.Agent = agent
	return principal, nil
}

// AuthenticatePrincipal authenticates the principal only, for operator
// endpoints, approval decisions and the UI. Agent headers are ignored.
func (a *Authenticator) AuthenticatePrincipal(ctx context.Context, in Input) (Result, error) {
	if in.Header == nil {
		in.Header = http.Header{}
	}
	return a.principal(ctx, in)
}

func (a *Authenticator) now() time.Time { return a.clock() }

// authError is an authentication failure. Its message is stable and never
// carries a credential.
type authError struct {
	stage  string
	reason string
}

func (e *authError) Error() string { return e.stage + " authentication failed: " + e.reason }

func (e *authError) Unwrap() error { return ErrAuth }

func principalError(reason string) error { return &authError{stage: "principal", reason: reason} }

func agentError(reason string) error { return &authError{stage: "agent", reason: reason} }
