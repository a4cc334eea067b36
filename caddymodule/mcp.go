package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/mcp"
)

func init() {
	caddy.RegisterModule(new(MCPHandler))
}

// MCPHandler is a governed MCP endpoint (Streamable HTTP: POST, GET and
// DELETE on the route) in front of upstream MCP servers declared in the
// nomos app. Every tools/call, resources/read, prompts/get,
// completion/complete, sampling and elicitation request is decided by the
// route's policy set, recorded in audit and, when allowed, relayed; results
// are redacted and capped. It answers every path it is routed.
type MCPHandler struct {
	// Policy names the policy set. Default: default.
	Policy string `json:"policy,omitempty"`
	// Upstreams are the names of the nomos app's upstreams this route
	// exposes, in priority order. Default: none (required unless builtins
	// is set).
	Upstreams []string `json:"upstreams,omitempty"`
	// Builtins offers the built-in tools (nomos_fs_read, nomos_fs_write,
	// nomos_apply_patch, nomos_exec, nomos_http_request and
	// nomos_capabilities) on this route, ahead of the upstreams' tools,
	// governed by the route's policy set exactly as under nomos mcp stdio.
	// They need the nomos app's executor { } block. Default: false.
	Builtins bool `json:"builtins,omitempty"`
	// Prefixes maps an upstream to the prefix of its tool and prompt names.
	// Default: none with one upstream, "<name>_" with several.
	Prefixes map[string]string `json:"prefixes,omitempty"`
	// Include are globs (path.Match) over the exposed tool names; a tool
	// is shown when it matches one. Default: every tool.
	Include []string `json:"include,omitempty"`
	// Exclude are globs over the exposed tool names that are never shown.
	// Default: none.
	Exclude []string `json:"exclude,omitempty"`
	// MaxBodyBytes caps a request body. Default: 1 MiB.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	MCPEndpointConfig
	RouteAuth

	gw      *mcp.Gateway
	slot    *gatewaySlot
	slotKey string
	logger  *zap.Logger
	metrics *metrics
}

// gatewaySlot is pooled per route configuration so that the gateway a
// reload builds can adopt its predecessor's client sessions.
type gatewaySlot struct {
	mu      sync.Mutex
	current *mcp.Gateway
}

// CaddyModule returns the Caddy module information.
func (*MCPHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.nomos_mcp",
		New: func() caddy.Module { return new(MCPHandler) },
	}
}

// Provision builds the gateway over the app's started upstreams and takes
// over the sessions of the gateway it replaces.
func (h *MCPHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appIface, err := ctx.App("nomos")
	if err != nil {
		return err
	}
	return h.bind(appIface.(*App))
}

func (h *MCPHandler) bind(app *App) error {
	if h.Policy == "" {
		h.Policy = "default"
	}
	if h.RequireAgent == nil {
		no := false
		h.RequireAgent = &no
	}
	gw, err := h.newGateway(app)
	if err != nil {
		return err
	}
	h.adopt(gw)
	if h.metrics = app.metrics; h.metrics != nil {
		h.metrics.trackGateway(gw)
	}
	return nil
}

func (h *MCPHandler) newGateway(app *App) (*mcp.Gateway, error) {
	svc, err := app.Service(h.Policy)
	if err != nil {
		return nil, err
	}
	ups := make(map[string]*mcp.Upstream, len(h.Upstreams))
	for _, name := range h.Upstreams {
		u, ok := app.upstreams[name]
		if !ok {
			return nil, fmt.Errorf("nomos_mcp: unknown upstream %q (declare it with upstream %s { } in the nomos app)", name, name)
		}
		ups[name] = u
	}
	gov := &governor{svc: svc, red: app.red}
	auth := func(r *http.Request, body []byte) (mcp.Identity, error) {
		id, e := h.authenticate(app, r, body, true)
		if e != nil && e.Code == service.CodeStateUnavailable {
			return mcp.Identity{}, mcp.ErrStateUnavailable
		}
		if e != nil { // the gateway adds the code, as the HTTP API does
			return mcp.Identity{}, errors.New(e.Msg)
		}
		return mcp.Identity{Principal: id.Principal, Agent: id.Agent}, nil
	}
	opts := []mcp.GatewayOption{mcp.WithRedactor(app.red.String)}
	if h.Builtins {
		set, err := app.builtinTools(svc, h.Policy, h.Upstreams)
		if err != nil {
			return nil, fmt.Errorf("nomos_mcp: builtins: %w", err)
		}
		opts = append(opts, mcp.WithBuiltins(set))
	}
	route := h.routeConfig()
	if app.shared != nil {
		// Scoped by the route's config, which every replica shares, so the
		// cap per principal is the route's, as on one replica.
		scope := configKey("mcp_route", route, h.Policy)
		route.Registry = mcp.NewRedisRegistry(app.shared, scope, app.State.Advertise)
		route.InitPacer = mcp.NewRedisInitPacer(app.shared, scope)
		route.UntrustedHeaders = func(in *http.Request) []string {
			if fromTrustedProxy(in) {
				return nil
			}
			return app.trustedHeaders()
		}
	}
	return mcp.NewGateway(route, ups, gov, auth, app.slog.With("route", "nomos_mcp"), opts...)
}

func (h *MCPHandler) routeConfig() mcp.RouteConfig {
	return mcp.RouteConfig{
		Upstreams: h.Upstreams, Prefixes: h.Prefixes, Include: h.Include, Exclude: h.Exclude,
		MaxBodyBytes: h.MaxBodyBytes, AllowedOrigins: h.AllowedOrigins, AllowedHosts: h.AllowedHosts,
		SessionTTL: time.Duration(h.SessionTTL), MaxSessionsPerPrincipal: h.MaxSessionsPerPrincipal,
		InitializePerMinute: h.InitializePerMinute,
	}
}

// adopt makes gw the route's gateway, moving the clients of the gateway
// the previous config served on the same route.
func (h *MCPHandler) adopt(gw *mcp.Gateway) {
	h.slotKey = configKey("mcp_route", h.routeConfig(), h.Policy)
	h.slot, _ = loadPooled(h.slotKey, func() (*gatewaySlot, func() error, error) {
		return new(gatewaySlot), nil, nil
	})
	h.slot.mu.Lock()
	defer h.slot.mu.Unlock()
	if h.slot.current != nil {
		if n := gw.AdoptSessions(h.slot.current); n > 0 {
			h.logger.Info("kept MCP client sessions across reload", zap.Int("sessions", n))
		}
	}
	h.slot.current, h.gw = gw, gw
}

// Validate checks the route with the engine's own validation.
func (h *MCPHandler) Validate() error {
	if len(h.Upstreams) == 0 && !h.Builtins {
		return errors.New("nomos_mcp: needs at least one upstream, or builtins")
	}
	err := h.RouteAuth.validate()
	if err == nil {
		err = h.routeConfig().Validate()
	}
	if err != nil {
		return fmt.Errorf("nomos_mcp: %w", err)
	}
	return nil
}

// ServeHTTP serves the MCP endpoint. It never calls next.
func (h *MCPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	h.gw.ServeHTTP(w, r)
	return nil
}

// Cleanup closes this config's gateway: sessions adopted by a newer one
// are no longer its own, so only the rest end.
func (h *MCPHandler) Cleanup() error {
	if h.slot != nil {
		h.slot.mu.Lock()
		if h.slot.current == h.gw {
			h.slot.current = nil
		}
		h.slot.mu.Unlock()
		_, _ = pool.Delete(h.slotKey)
	}
	if h.gw != nil {
		if h.metrics != nil {
			h.metrics.untrackGateway(h.gw)
		}
		return h.gw.Close()
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*MCPHandler)(nil)
	_ caddy.Validator             = (*MCPHandler)(nil)
	_ caddy.CleanerUpper          = (*MCPHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*MCPHandler)(nil)
)
