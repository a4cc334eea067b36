package caddymodule

import (
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/policy/action"
)

func init() {
	caddy.RegisterModule(new(APIHandler))
}

// APIHandler serves the HTTP action contract: POST /action (and its alias
// /run), /explain, /approvals/decide and /actions/report, and GET /healthz
// and /version. Paths are matched exactly; mount it under a prefix with
// handle_path. Every policy outcome is HTTP 200; errors use the shape
// {"decision":"DENY","reason":"<code>: <message>"}.
type APIHandler struct {
	// Policy names the policy set of the nomos app. Default: default.
	Policy string `json:"policy,omitempty"`
	RouteAuth

	app    *App
	svc    *service.Service
	logger *zap.Logger
	routes map[string]apiRoute
}

// apiRoute is one endpoint of the contract.
type apiRoute struct {
	method string
	serve  func(h *APIHandler, w http.ResponseWriter, r *http.Request) error
}

// CaddyModule returns the Caddy module information.
func (*APIHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.nomos_api",
		New: func() caddy.Module { return new(APIHandler) },
	}
}

// Provision binds the handler to the nomos app's pipeline.
func (h *APIHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appIface, err := ctx.App("nomos")
	if err != nil {
		return err
	}
	return h.bind(appIface.(*App))
}

// bind attaches the handler to a provisioned app.
func (h *APIHandler) bind(app *App) error {
	if h.Policy == "" {
		h.Policy = "default"
	}
	if h.logger == nil {
		h.logger = zap.NewNop()
	}
	h.app = app
	var err error
	if h.svc, err = app.Service(h.Policy); err != nil {
		return err
	}
	h.routes = map[string]apiRoute{
		"/action":           {http.MethodPost, (*APIHandler).serveAction},
		"/run":              {http.MethodPost, (*APIHandler).serveAction},
		"/explain":          {http.MethodPost, (*APIHandler).serveExplain},
		"/approvals/decide": {http.MethodPost, (*APIHandler).serveDecide},
		"/actions/report":   {http.MethodPost, (*APIHandler).serveReport},
		"/healthz":          {http.MethodGet, (*APIHandler).serveHealthz},
		"/version":          {http.MethodGet, (*APIHandler).serveVersion},
	}
	return nil
}

// ServeHTTP dispatches to the endpoint. It never calls next: the contract's
// paths are its own, and anything else is a 404 in the same error shape.
func (h *APIHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	route, ok := h.routes[r.URL.Path]
	if !ok {
		return writeError(w, service.Errorf(http.StatusNotFound, service.CodeNotEnabled, "no such endpoint"))
	}
	if r.Method != route.method && !(r.Method == http.MethodHead && route.method == http.MethodGet) {
		w.Header().Set("Allow", route.method)
		return writeError(w, service.Errorf(http.StatusMethodNotAllowed, service.CodeMethod, "use %s", route.method))
	}
	return route.serve(h, w, r)
}

// guarded authenticates the caller's principal, reads the body, verifies
// the agent and only then runs fn inside a concurrency slot: the common
// front half of every POST endpoint.
func (h *APIHandler) guarded(w http.ResponseWriter, r *http.Request, withAgent bool,
	fn func(body []byte, id action.Identity) (any, error)) error {
	body, id, e := h.admit(h.app, r, maxBody, withAgent)
	if e != nil {
		return writeError(w, e)
	}
	if !h.app.acquire() {
		return writeError(w, service.Errorf(http.StatusTooManyRequests, service.CodeRateLimited, "concurrency limit reached"))
	}
	defer h.app.release()
	setPlaceholder(r, "principal", id.Principal)
	if !h.app.allowRequest(id.Principal) {
		return writeError(w, service.Errorf(http.StatusTooManyRequests, service.CodeRateLimited, "rate_limit_per_minute reached for this principal"))
	}
	resp, err := fn(body, id)
	if err != nil {
		se := service.AsError(err)
		if se.Status >= 500 {
			h.logger.Error("request failed", zap.String("path", r.URL.Path), zap.Error(err))
		}
		return writeError(w, se)
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (h *APIHandler) serveAction(w http.ResponseWriter, r *http.Request) error {
	return h.guarded(w, r, true, func(body []byte, id action.Identity) (any, error) {
		resp, err := h.svc.Process(r.Context(), body, id)
		if err == nil {
			setDecisionPlaceholders(r, resp)
		}
		return resp, err
	})
}

func (h *APIHandler) serveExplain(w http.ResponseWriter, r *http.Request) error {
	return h.guarded(w, r, true, func(body []byte, id action.Identity) (any, error) {
		return h.svc.Explain(r.Context(), body, id)
	})
}

func (h *APIHandler) serveDecide(w http.ResponseWriter, r *http.Request) error {
	return h.guarded(w, r, false, func(body []byte, id action.Identity) (any, error) {
		return h.svc.Decide(r.Context(), body, id.Principal)
	})
}

func (h *APIHandler) serveReport(w http.ResponseWriter, r *http.Request) error {
	return h.guarded(w, r, true, func(body []byte, id action.Identity) (any, error) {
		return h.svc.Report(r.Context(), body, id)
	})
}

// serveHealthz answers liveness and readiness probes: the config is loaded
// (a provisioned handler means a provisioned app).
func (h *APIHandler) serveHealthz(w http.ResponseWriter, _ *http.Request) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h *APIHandler) serveVersion(w http.ResponseWriter, _ *http.Request) error {
	return writeJSON(w, http.StatusOK, versionInfo())
}

// versionInfo reports the engine and build versions; it holds no secrets.
func versionInfo() map[string]string {
	out := map[string]string{"engine_version": service.EngineVersion, "caddy_version": caddyVersion()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		out["go_version"] = bi.GoVersion
	}
	return out
}

func caddyVersion() string {
	simple, _ := caddy.Version()
	return simple
}

// setDecisionPlaceholders exposes the outcome to Caddy's access logs as
// {nomos.decision} and {nomos.rule_ids}.
func setDecisionPlaceholders(r *http.Request, resp *service.Response) {
	setPlaceholder(r, "decision", resp.Decision)
	setPlaceholder(r, "reason", resp.Reason)
	setPlaceholder(r, "rule_ids", joinIDs(resp.RuleIDs))
}

func setPlaceholder(r *http.Request, name, value string) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("nomos."+name, value)
	}
}

func joinIDs(ids []string) string { return strings.Join(ids, ",") }

// Interface guards
var (
	_ caddy.Provisioner           = (*APIHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*APIHandler)(nil)
)
