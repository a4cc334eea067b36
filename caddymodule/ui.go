package caddymodule

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/policy/action"
)

func init() {
	caddy.RegisterModule(new(UIHandler))
}

//go:embed ui
var uiAssets embed.FS

// uiCSP allows only this origin's own script, style and JSON: no inline
// script, no CDN, no framing.
const uiCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

// uiCSRFHeader carries the session's CSRF token on every POST.
const uiCSRFHeader = "X-Nomos-CSRF"

// UIHandler serves the operator UI at /ui/ and its JSON API at /api/ui/:
// readiness (the doctor checks of the running config), the approval
// inbox, audit search and trace timelines, upstream health and an
// explain-only form. Every API call needs an authenticated principal (an
// API key, mTLS, or an earlier Caddy authentication handler through
// principal_from) who is a reader; deciding needs a decider who is also
// an approver of the nomos app. Route /ui* and /api/ui/* to it.
type UIHandler struct {
	// Policy names the policy set whose pipeline decides and explains.
	// Default: default.
	Policy string `json:"policy,omitempty"`
	// Readers may use the UI's read endpoints. Default: the nomos app's
	// approvers plus Deciders.
	Readers []string `json:"readers,omitempty"`
	// Deciders may approve and deny from the UI; each must also be an
	// approver of the nomos app, which the decision itself checks.
	// Default: the nomos app's approvers.
	Deciders []string `json:"deciders,omitempty"`
	// PrincipalFrom takes the principal from an earlier Caddy
	// authentication handler, e.g. {http.auth.user.id}. Default: off.
	PrincipalFrom string `json:"principal_from,omitempty"`

	app       *App
	svc       *service.Service
	ctx       caddy.Context
	logger    *zap.Logger
	auth      RouteAuth
	readers   []string
	decider   []string
	approvers []string // the nomos app's: a decider must also be one
	csrfKey   []byte
	events    *audit.SQLiteSink
	assets    fs.FS
	routes    map[string]uiRoute
}

// CaddyModule returns the Caddy module information.
func (*UIHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.nomos_ui",
		New: func() caddy.Module { return new(UIHandler) },
	}
}

// Provision binds the UI to the nomos app and opens the sqlite audit log
// read-only, when there is one.
func (h *UIHandler) Provision(ctx caddy.Context) error {
	h.ctx, h.logger = ctx, ctx.Logger()
	appIface, err := ctx.App("nomos")
	if err != nil {
		return err
	}
	if err := h.bind(appIface.(*App)); err != nil {
		return err
	}
	return h.openEvents()
}

// bind attaches the handler to a provisioned app.
func (h *UIHandler) bind(app *App) error {
	if h.Policy == "" {
		h.Policy = "default"
	}
	if h.logger == nil {
		h.logger = zap.NewNop()
	}
	h.app, h.auth, h.routes = app, RouteAuth{PrincipalFrom: h.PrincipalFrom}, uiRoutes()
	if err := h.auth.validate(); err != nil {
		return fmt.Errorf("nomos_ui: %w", err)
	}
	var err error
	if h.svc, err = app.Service(h.Policy); err != nil {
		return err
	}
	var approvers []string
	if app.Approvals != nil {
		approvers = app.Approvals.Approvers
	}
	h.approvers = approvers
	h.decider = orDefault(h.Deciders, approvers)
	h.readers = orDefault(h.Readers, append(slices.Clone(approvers), h.decider...))
	h.csrfKey = make([]byte, 32)
	_, _ = rand.Read(h.csrfKey) // crypto/rand.Read never fails
	sub, err := fs.Sub(uiAssets, "ui")
	h.assets = sub
	return err
}

func orDefault(v, def []string) []string {
	if len(v) > 0 {
		return v
	}
	return def
}

// openEvents opens the first sqlite audit sink for reading. Without one
// the activity and upstream views say so instead of failing the config.
func (h *UIHandler) openEvents() error {
	for _, s := range h.app.Audit.Sinks {
		if s.Type != "sqlite" {
			continue
		}
		ns, err := normalizeSink(s)
		if err != nil {
			return fmt.Errorf("nomos_ui: %w", err)
		}
		r, err := audit.OpenSQLiteReader(ns.Path)
		if err != nil {
			return fmt.Errorf("nomos_ui: %w", err)
		}
		h.events = r
		return nil
	}
	return nil
}

// Cleanup closes the audit reader.
func (h *UIHandler) Cleanup() error {
	if h.events != nil {
		return h.events.Close()
	}
	return nil
}

// ServeHTTP serves the assets under /ui/ and the API under /api/ui/.
// Other paths pass to next.
func (h *UIHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	p := r.URL.Path
	switch {
	case p == "/ui":
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
		return nil
	case strings.HasPrefix(p, "/ui/"):
		setSecurityHeaders(w)
		return h.serveAsset(w, r, strings.TrimPrefix(p, "/ui/"))
	case strings.HasPrefix(p, "/api/ui/"):
		setSecurityHeaders(w)
		return h.serveAPI(w, r, strings.TrimPrefix(p, "/api/ui/"))
	}
	return next.ServeHTTP(w, r)
}

func setSecurityHeaders(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", uiCSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
}

var assetTypes = map[string]string{
	"index.html": "text/html; charset=utf-8",
	"app.js":     "text/javascript; charset=utf-8",
	"app.css":    "text/css; charset=utf-8",
}

func (h *UIHandler) serveAsset(w http.ResponseWriter, r *http.Request, name string) error {
	if name == "" {
		name = "index.html"
	}
	ctype, ok := assetTypes[name]
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return writeError(w, service.Errorf(http.StatusNotFound, service.CodeNotEnabled, "no such page"))
	}
	data, err := fs.ReadFile(h.assets, name)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "no-cache")
	_, err = w.Write(data)
	return err
}

// uiCaller is the authenticated principal and what they may do.
type uiCaller struct {
	principal string
	canRead   bool
	canDecide bool
}

// callerOf is what a principal, authenticated the way nomos_api does for
// principal endpoints (API key, JWT, mTLS, trusted headers or
// principal_from), may do in the UI.
func (h *UIHandler) callerOf(id action.Identity) (uiCaller, *service.Error) {
	if id.Principal == "" {
		return uiCaller{}, service.Errorf(http.StatusUnauthorized, service.CodeAuth, "authentication failed")
	}
	return uiCaller{
		principal: id.Principal,
		canRead:   slices.Contains(h.readers, id.Principal),
		canDecide: slices.Contains(h.decider, id.Principal),
	}, nil
}

// csrfToken binds a token to the principal with this handler's key, so a
// token neither outlives the config nor serves another principal.
func (h *UIHandler) csrfToken(principal string) string {
	m := hmac.New(sha256.New, h.csrfKey)
	m.Write([]byte("nomos-ui-csrf\x00" + principal))
	return hex.EncodeToString(m.Sum(nil))
}

// checkCSRF guards state-changing requests: the session's token in a
// custom header (which a cross-site form cannot set), a JSON body, and,
// when the browser says where the request comes from, the same origin.
func (h *UIHandler) checkCSRF(r *http.Request, principal string) *service.Error {
	deny := func(msg string) *service.Error {
		return service.Errorf(http.StatusForbidden, service.CodeAuth, "csrf: %s", msg)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return deny("cross-site request")
	}
	if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host) {
		return deny("cross-origin request")
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return deny("content type must be application/json")
	}
	got := r.Header.Get(uiCSRFHeader)
	if got == "" || !hmac.Equal([]byte(got), []byte(h.csrfToken(principal))) {
		return deny("missing or wrong " + uiCSRFHeader + " token (reload the page)")
	}
	return nil
}

func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*UIHandler)(nil)
	_ caddy.CleanerUpper          = (*UIHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*UIHandler)(nil)
)
