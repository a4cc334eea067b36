package caddymodule

import (
	"context"
	"fmt"
	"github.com/caddy-nomos/nomos/audit"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

func init() {
	caddy.RegisterModule(new(GuardHandler))
}

// GuardHandler is an inline firewall in front of the handlers that follow
// it, typically reverse_proxy: each request becomes an action that the
// route's policy set decides and audit records before anything is sent on.
// Only an ALLOW calls the next handler; DENY and REQUIRE_APPROVAL answer 403
// and a rate limit 429, in the error shape of the HTTP API. The upstream's
// response is redacted and capped as the decision's obligations say, event
// by event for server-sent events. A circuit breaker around the next handler
// answers 503 while the upstream keeps failing.
type GuardHandler struct {
	// Policy names the policy set of the nomos app. Default: default.
	Policy string `json:"policy,omitempty"`
	// Name identifies the guard in logs, metrics and audit evidence, and
	// keeps the breakers of guards with otherwise equal settings apart.
	// Default: guard.
	Name string `json:"name,omitempty"`
	// ActionType is the action type of every request; Caddy placeholders
	// are replaced per request. Default: net.http_request.
	ActionType string `json:"action_type,omitempty"`
	// Resource is the resource of every request; Caddy placeholders are
	// replaced per request, and {nomos.request.escaped_path} is the path
	// as the client escaped it. The decoded path placeholders
	// ({http.request.uri*}, {http.request.orig_uri*}) are refused: a
	// client's %3F or %2F would change the resource policy sees but not
	// the path the upstream gets. Default: url://<host>[:port]<path> (the
	// path as the client escaped it).
	Resource string `json:"resource,omitempty"`
	// Params adds string params whose values are Caddy placeholders, e.g.
	// {"customer": "{http.request.header.X-Customer}"}. Default: none.
	Params map[string]string `json:"params,omitempty"`
	// BodyParams adds params taken from the JSON request body, by dot path
	// ("refund.amount"; a numeric segment indexes an array), keeping their
	// JSON type. A body that is not strict JSON is refused (400); a missing
	// field leaves the param out. Default: none.
	BodyParams map[string]string `json:"body_params,omitempty"`
	// ParamHeaders are request headers copied into params.headers (lower
	// case names). Credential headers are refused. Default: none.
	ParamHeaders []string `json:"param_headers,omitempty"`
	// MaxBodyBytes caps the request body, which is read whole before the
	// decision and passed on unchanged. A larger body is refused with 413.
	// Default: 1 MiB.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// Breaker is the circuit breaker around the next handler. Default: on,
	// with the defaults of GuardBreakerConfig.
	Breaker *GuardBreakerConfig `json:"breaker,omitempty"`
	// MCP turns on MCP mode: the requests are the Streamable HTTP transport
	// of the remote MCP server named here, governed as nomos_mcp governs
	// its own (tools/call, prompts, resources, completion, sampling and
	// elicitation on mcp.Path, lists filtered by policy, Mcp-Session-Id
	// bound to the principal that initialized it). Default: off (plain
	// HTTP mode).
	MCP *GuardMCPConfig `json:"mcp,omitempty"`
	RouteAuth

	app     *App
	svc     *service.Service
	logger  *zap.Logger
	mapping guardMapping
	breaker *guardBreaker
	poolKey string
	mcp     *guardMCP
}

// defaultGuardMaxBody is the request body cap of a guard.
const defaultGuardMaxBody = 1 << 20

// CaddyModule returns the Caddy module information.
func (*GuardHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.nomos_guard",
		New: func() caddy.Module { return new(GuardHandler) },
	}
}

// Provision binds the guard to the nomos app and its breaker.
func (h *GuardHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appIface, err := ctx.App("nomos")
	if err != nil {
		return err
	}
	transitions, err := registerBreakerTransitions(ctx)
	if err != nil {
		return fmt.Errorf("nomos_guard: metrics: %w", err)
	}
	return h.bind(appIface.(*App), transitions)
}

// bind applies defaults and attaches the guard to a provisioned app.
func (h *GuardHandler) bind(app *App, transitions breakerObserver) error {
	h.applyDefaults()
	if h.logger == nil {
		h.logger = zap.NewNop()
	}
	if err := h.Validate(); err != nil {
		return err
	}
	h.app = app
	var err error
	if h.svc, err = app.Service(h.Policy); err != nil {
		return fmt.Errorf("nomos_guard: %w", err)
	}
	if h.MCP != nil {
		if err := h.bindMCP(app); err != nil {
			return err
		}
	} else if h.mapping, err = newHTTPMapping(h); err != nil {
		return fmt.Errorf("nomos_guard: %w", err)
	}
	return h.loadBreaker(app, transitions)
}

func (h *GuardHandler) applyDefaults() {
	if h.Policy == "" {
		h.Policy = "default"
	}
	if h.Name == "" {
		h.Name = "guard"
	}
	if h.MCP != nil {
		h.MCP.MCPEndpointConfig = h.MCP.withDefaults()
	} else if h.ActionType == "" {
		h.ActionType = action.TypeNetHTTPRequest
	}
	if h.MaxBodyBytes <= 0 {
		h.MaxBodyBytes = defaultGuardMaxBody
	}
	if h.Breaker == nil {
		h.Breaker = new(GuardBreakerConfig)
	}
	h.Breaker.applyDefaults()
}

// Validate refuses settings that cannot work; templates are checked by
// building the mapping.
func (h *GuardHandler) Validate() error {
	if err := h.RouteAuth.validate(); err != nil {
		return fmt.Errorf("nomos_guard: %w", err)
	}
	for _, name := range h.ParamHeaders {
		if err := checkParamHeader(name); err != nil {
			return fmt.Errorf("nomos_guard: param_headers: %w", err)
		}
	}
	for name := range h.Params {
		if _, dup := h.BodyParams[name]; dup {
			return fmt.Errorf("nomos_guard: param %q is set both by params and body_params", name)
		}
	}
	if h.MCP != nil {
		if err := h.MCP.validate(h); err != nil {
			return err
		}
	}
	return h.Breaker.validate()
}

// ServeHTTP decides the request and, on ALLOW only, calls next under the
// breaker with the response filtered. The mapping (request to action) and
// the outcome writers (refuse, forward) are the plain HTTP mode; MCP mode
// (serveMCP) governs each JSON-RPC message on mcp.Path instead and shares
// the breaker and the filter.
func (h *GuardHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.MCP != nil {
		return h.serveMCP(w, r, next)
	}
	g, e := h.decide(r)
	if e != nil {
		return writeError(w, e)
	}
	setDecisionPlaceholders(r, g.auth.Response)
	setPlaceholder(r, "approval_id", g.auth.Response.ApprovalID)
	w.Header().Set(headerActionID, g.auth.Response.ActionID)
	if !g.allowed() {
		return h.refuse(w, r, g)
	}
	return h.forward(w, r, next, g)
}

// guarded is one request that passed authentication and was decided.
type guarded struct {
	auth *service.Authorization
}

func (g *guarded) allowed() bool { return g.auth.Response.Decision == policy.Allow }

// decide runs the front half: authenticate the caller and read the body
// (RouteAuth.admit), then, inside a concurrency slot, map the request to
// an action and decide it. The slot is released before next runs, so long
// responses do not hold it.
func (h *GuardHandler) decide(r *http.Request) (*guarded, *service.Error) {
	body, id, e := h.admit(h.app, r, h.MaxBodyBytes, true)
	if e != nil {
		return nil, e
	}
	if !h.app.acquire() {
		return nil, service.Errorf(http.StatusTooManyRequests, service.CodeRateLimited, "concurrency limit reached")
	}
	defer h.app.release()
	setPlaceholder(r, "principal", id.Principal)
	env, err := h.mapping.envelope(r, body)
	if err != nil {
		return nil, h.reject(r, env, id, err)
	}
	auth, err := h.svc.Authorize(service.WithFrontDoor(r.Context(), service.FrontDoorGuard), env, id, h.evidence())
	if err != nil {
		return nil, h.failure(r, err)
	}
	stripNomosHeaders(r, h.app.trustedHeaders())
	r.Body = newBodyReader(body)
	r.ContentLength, r.TransferEncoding = int64(len(body)), nil
	return &guarded{auth: auth}, nil
}

// reject records a request the mapping refused and returns its error.
func (h *GuardHandler) reject(r *http.Request, env *action.Envelope, id action.Identity, err error) *service.Error {
	se := service.AsError(err)
	if env != nil {
		h.svc.Reject(r.Context(), env, id, h.evidence(), audit.ResultValidationError, se.Error())
	}
	return se
}

func (h *GuardHandler) failure(r *http.Request, err error) *service.Error {
	se := service.AsError(err)
	if se.Status >= 500 {
		h.logger.Error("guard decision failed", zap.String("guard", h.Name), zap.String("path", r.URL.Path), zap.Error(err))
	}
	return se
}

// evidence is the transport metadata of every audit event of the guard.
func (h *GuardHandler) evidence() map[string]any {
	return map[string]any{"transport": "nomos_guard", "guard": h.Name}
}

// stripNomosHeaders removes the credentials and control headers Nomos
// consumed, so the upstream never sees the agent's Nomos credentials.
func stripNomosHeaders(r *http.Request, trusted []string) {
	r.Header.Del("Authorization")
	for name := range r.Header {
		if strings.HasPrefix(strings.ToLower(name), "x-nomos-") {
			r.Header.Del(name)
		}
	}
	for _, name := range trusted {
		if name != "" {
			r.Header.Del(name)
		}
	}
	// The response must reach the guard uncompressed to be redacted; the
	// proxy's transport negotiates and decodes compression on its own.
	r.Header.Del("Accept-Encoding")
}

// Cleanup releases the guard's breaker and MCP session bindings; an
// unchanged reload keeps them.
func (h *GuardHandler) Cleanup() error {
	if h.mcp != nil {
		_, _ = pool.Delete(h.mcp.poolKey)
	}
	if h.poolKey != "" {
		_, err := pool.Delete(h.poolKey)
		return err
	}
	return nil
}

// completionContext outlives the client: completion is recorded even when
// the client went away.
func completionContext(r *http.Request) context.Context {
	return context.WithoutCancel(r.Context())
}

// Interface guards
var (
	_ caddy.Provisioner           = (*GuardHandler)(nil)
	_ caddy.Validator             = (*GuardHandler)(nil)
	_ caddy.CleanerUpper          = (*GuardHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*GuardHandler)(nil)
)
