package caddymodule

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-nomos/nomos/internal/identity"
)

const handlerBundle = `version: v1
rules:
  - id: read-orders
    action_type: orders.read
    resource: "shop://orders/**"
    decision: ALLOW
`

// newTestApp provisions a nomos app from JSON with its state in a temp dir.
func newTestApp(t testing.TB, mutate func(*App)) *App {
	t.Helper()
	dir := t.TempDir()
	bundle := filepath.Join(dir, "b.yaml")
	if err := os.WriteFile(bundle, []byte(handlerBundle), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("T_KEY", "alice-key")
	t.Setenv("T_SECRET", "agent-secret-value")
	app := &App{
		Policies: map[string]*PolicySet{"default": {Bundles: []BundleConfig{{Path: bundle}}}},
		Identity: &IdentityConfig{
			APIKeys:        []APIKeyConfig{{Key: "{env.T_KEY}", Principal: "alice"}},
			AgentSecrets:   []AgentSecretConfig{{Agent: "bot", Secret: "{env.T_SECRET}"}},
			TrustedHeaders: &TrustedHeadersConfig{Principal: "X-Auth-Principal"},
		},
		Audit:     &AuditConfig{Sinks: []SinkConfig{{Type: "sqlite", Path: filepath.Join(dir, "audit.db")}}},
		Approvals: &ApprovalsConfig{Store: "file", Path: filepath.Join(dir, "approvals.json"), Approvers: []string{"alice"}},
	}
	if mutate != nil {
		mutate(app)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := app.Provision(ctx); err != nil {
		t.Fatalf("provision: %v", err)
	}
	t.Cleanup(func() { _ = app.Cleanup() })
	return app
}

func newTestHandler(t *testing.T, app *App, h *APIHandler) *APIHandler {
	t.Helper()
	if h == nil {
		h = new(APIHandler)
	}
	if err := h.bind(app); err != nil {
		t.Fatal(err)
	}
	return h
}

const orderBody = `{"schema_version":"v1","action_id":"a1","trace_id":"t1","action_type":"orders.read","resource":"shop://orders/1","params":{},"context":{}}`

// serve runs one request through the handler with a Caddy replacer and
// vars in its context, as Caddy's server would.
func serve(t *testing.T, h *APIHandler, req *http.Request, vars map[string]any) (*httptest.ResponseRecorder, *caddy.Replacer) {
	t.Helper()
	if vars == nil {
		vars = map[string]any{}
	}
	req = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, vars))
	repl := caddyhttp.NewTestReplacer(req) // with Caddy's http.* placeholders, as a server has
	ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl)
	rec := httptest.NewRecorder()
	if err := h.ServeHTTP(rec, req.WithContext(ctx), nil); err != nil {
		t.Fatal(err)
	}
	return rec, repl
}

func signed(body string) *http.Request {
	return signedFor(http.MethodPost, "/action", "/action", body)
}

// signedFor is a request for path, v2-signed by agent "bot" for principal
// alice as if the client had sent target.
func signedFor(method, path, target, body string) *http.Request {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer alice-key")
	signAs(req.Header, identity.SignedRequest{Method: method, Target: target, Principal: "alice", Agent: "bot", Body: []byte(body)})
	return req
}

// signAs sets the v2 agent headers for r, with a fresh timestamp and nonce.
func signAs(h http.Header, r identity.SignedRequest) {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	r.Timestamp = strconv.FormatInt(time.Now().Unix(), 10)
	r.Nonce = hex.EncodeToString(nonce)
	h.Set(identity.HeaderAgentID, r.Agent)
	h.Set(identity.HeaderTimestamp, r.Timestamp)
	h.Set(identity.HeaderNonce, r.Nonce)
	h.Set(identity.HeaderAgentSignature, identity.Sign("agent-secret-value", r))
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("non-JSON answer %d: %s", rec.Code, rec.Body)
	}
	return out
}

func TestHandlerAllowSetsPlaceholders(t *testing.T) {
	h := newTestHandler(t, newTestApp(t, nil), nil)
	rec, repl := serve(t, h, signed(orderBody), nil)
	if rec.Code != 200 || decode(t, rec)["decision"] != "ALLOW" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	for k, want := range map[string]string{"nomos.decision": "ALLOW", "nomos.principal": "alice", "nomos.rule_ids": "read-orders"} {
		if got, _ := repl.GetString(k); got != want {
			t.Errorf("{%s} = %q, want %q", k, got, want)
		}
	}
	if rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("content type %q", rec.Header().Get("Content-Type"))
	}
}

func TestHandlerTransportErrors(t *testing.T) {
	h := newTestHandler(t, newTestApp(t, nil), nil)
	cases := map[string]struct {
		req    *http.Request
		status int
		code   string
	}{
		"unknown path":  {httptest.NewRequest(http.MethodGet, "/admin", nil), 404, "not_enabled"},
		"wrong method":  {httptest.NewRequest(http.MethodGet, "/action", nil), 405, "method_not_allowed"},
		"no credential": {httptest.NewRequest(http.MethodPost, "/action", strings.NewReader(orderBody)), 401, "auth_error"},
		"too large":     {signed(strings.Repeat(" ", 70<<10)), 413, "request_too_large"},
		"bad envelope":  {signed(`{"schema_version":"v2"}`), 400, "validation_error"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			rec, _ := serve(t, h, c.req, nil)
			out := decode(t, rec)
			if rec.Code != c.status || out["decision"] != "DENY" || !strings.HasPrefix(out["reason"].(string), c.code+": ") {
				t.Fatalf("got %d %v", rec.Code, out)
			}
		})
	}
}

func TestHandlerConcurrencyLimit(t *testing.T) {
	app := newTestApp(t, func(a *App) { a.Runtime = &RuntimeConfig{ConcurrencyLimit: 1} })
	h := newTestHandler(t, app, nil)
	if !app.acquire() {
		t.Fatal("could not take the only slot")
	}
	rec, _ := serve(t, h, signed(orderBody), nil)
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	app.release()
	if rec, _ := serve(t, h, signed(orderBody), nil); rec.Code != 200 {
		t.Fatalf("after release: %d %s", rec.Code, rec.Body)
	}
}

func TestHandlerRouteIdentity(t *testing.T) {
	app := newTestApp(t, nil)
	no := false
	anon := newTestHandler(t, app, &APIHandler{RouteAuth: RouteAuth{Anonymous: "dev", RequireAgent: &no}})
	rec, repl := serve(t, anon, httptest.NewRequest(http.MethodPost, "/action", strings.NewReader(orderBody)), nil)
	if p, _ := repl.GetString("nomos.principal"); rec.Code != 200 || p != "dev" {
		t.Fatalf("anonymous: %d %s principal %q", rec.Code, rec.Body, p)
	}
	bad := httptest.NewRequest(http.MethodPost, "/action", strings.NewReader(orderBody))
	bad.Header.Set("Authorization", "Bearer wrong")
	if rec, _ := serve(t, anon, bad, nil); rec.Code != 401 {
		t.Fatalf("a presented bad credential fell back to anonymous: %d", rec.Code)
	}
	upstream := newTestHandler(t, app, &APIHandler{RouteAuth: RouteAuth{PrincipalFrom: "{http.vars.user}", RequireAgent: &no}})
	req := httptest.NewRequest(http.MethodPost, "/action", strings.NewReader(orderBody))
	rec, repl = serve(t, upstream, req, map[string]any{"user": "carol"})
	if p, _ := repl.GetString("nomos.principal"); rec.Code != 200 || p != "carol" {
		t.Fatalf("principal_from: %d %s principal %q", rec.Code, rec.Body, p)
	}
	// An auth handler that did not run for this request leaves no
	// principal: never the placeholder's own text.
	rec, _ = serve(t, upstream, httptest.NewRequest(http.MethodPost, "/action", strings.NewReader(orderBody)), nil)
	if rec.Code != 401 {
		t.Fatalf("principal_from unset: %d %s", rec.Code, rec.Body)
	}
	for setting, want := range map[string]string{
		"{http.auth.user.id}": "", "{http.vars.user}": "", "{http.request.tls.client.subject}": "",
		"{http.request.header.X-User}": "not set by an authentication handler", "{http.request.uri.query.user}": "not set by an authentication handler", "{http.regexp.user.1}": "not set by an authentication handler",
		"user-{http.auth.user.id}": "exactly one placeholder", "{http.auth.user.id}{http.vars.x}": "exactly one placeholder",
	} {
		err := (&RouteAuth{PrincipalFrom: setting}).validate()
		if (want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), want) {
			t.Errorf("principal_from %s: %v", setting, err)
		}
	}
}

// TestTrustedHeadersOnlyFromTrustedProxies: the same header is honoured
// from a trusted proxy and ignored otherwise.
func TestTrustedHeadersOnlyFromTrustedProxies(t *testing.T) {
	no := false
	h := newTestHandler(t, newTestApp(t, nil), &APIHandler{RouteAuth: RouteAuth{RequireAgent: &no}})
	mk := func() *http.Request {
		req := httptest.NewRequest(http.MethodPost, "/action", strings.NewReader(orderBody))
		req.Header.Set("X-Auth-Principal", "mallory")
		return req
	}
	if rec, _ := serve(t, h, mk(), map[string]any{caddyhttp.TrustedProxyVarKey: false}); rec.Code != 401 {
		t.Fatalf("untrusted header accepted: %d %s", rec.Code, rec.Body)
	}
	rec, repl := serve(t, h, mk(), map[string]any{caddyhttp.TrustedProxyVarKey: true})
	if p, _ := repl.GetString("nomos.principal"); rec.Code != 200 || p != "mallory" {
		t.Fatalf("trusted proxy header: %d %s %q", rec.Code, rec.Body, p)
	}
}

func TestHandlerHealthAndVersion(t *testing.T) {
	h := newTestHandler(t, newTestApp(t, nil), nil)
	for _, p := range []string{"/healthz", "/version"} {
		rec, _ := serve(t, h, httptest.NewRequest(http.MethodGet, p, nil), nil)
		if rec.Code != 200 || !bytes.HasPrefix(rec.Body.Bytes(), []byte("{")) {
			t.Fatalf("%s: %d %s", p, rec.Code, rec.Body)
		}
	}
}

// TestProvisionRefusesBadConfig: every bad setting is an error at load.
func TestProvisionRefusesBadConfig(t *testing.T) {
	cases := map[string]struct {
		mutate func(*App)
		want   string
	}{
		"missing bundle":        {func(a *App) { a.Policies["default"].Bundles[0].Path = "/nonexistent.yaml" }, "reading bundle"},
		"unset secret":          {func(a *App) { a.Identity.APIKeys[0].Key = "{env.T_UNSET_VAR}" }, "unset environment variable"},
		"unknown sink":          {func(a *App) { a.Audit.Sinks[0].Type = "kafka" }, "unknown sink type"},
		"bad webhook url":       {func(a *App) { a.Audit.Sinks[0] = SinkConfig{Type: "webhook", URL: "ftp://x"} }, "webhook url"},
		"stateless approvals":   {func(a *App) { a.Runtime = &RuntimeConfig{Stateless: true} }, "need an external store"},
		"stateless sqlite":      {func(a *App) { a.Runtime = &RuntimeConfig{Stateless: true}; a.Approvals = nil }, "sqlite audit sink is not allowed"},
		"bad deployment mode":   {func(a *App) { a.Runtime = &RuntimeConfig{DeploymentMode: "cloud"} }, "deployment_mode"},
		"executor without root": {func(a *App) { a.Executor = &ExecutorConfig{} }, "workspace_root is required"},
		"upstream transport": {func(a *App) { a.Upstreams = map[string]*UpstreamConfig{"x": {Command: "./a", Transport: "websocket"}} },
			`unknown transport "websocket"`},
		"upstream command and url": {func(a *App) {
			a.Upstreams = map[string]*UpstreamConfig{"x": {Command: "./a", URL: "https://x.example/mcp"}}
		}, "needs command and no url"},
		"upstream without either": {func(a *App) { a.Upstreams = map[string]*UpstreamConfig{"x": {}} }, "needs url and no command"},
		"unknown sandbox profile": {func(a *App) { a.Executor = &ExecutorConfig{WorkspaceRoot: os.TempDir(), SandboxProfile: "vm"} },
			"unknown sandbox profile"},
		"bad approvals store":   {func(a *App) { a.Approvals.Store = "memcached" }, "unknown store"},
		"redis store alone":     {func(a *App) { a.Approvals.Store, a.Approvals.Path = "redis", "" }, "store redis needs state redis"},
		"state without redis":   {func(a *App) { a.State = &StateConfig{} }, "state: redis is required"},
		"redis address and url": {func(a *App) { a.State = &StateConfig{Redis: &RedisConfig{Address: "a:1", URL: "redis://a:1"}} }, "mutually exclusive"},
		"redis unset password": {func(a *App) {
			a.State = &StateConfig{Redis: &RedisConfig{Address: "127.0.0.1:1", Password: "{env.T_UNSET_VAR}"}}
		}, "password"},
		"redis literal password": {func(a *App) { a.State = &StateConfig{Redis: &RedisConfig{Address: "127.0.0.1:1", Password: "hunter2"}} }, "placeholder"},
		"redis url password":     {func(a *App) { a.State = &StateConfig{Redis: &RedisConfig{URL: "redis://:hunter2@127.0.0.1:1"}} }, "must not carry a password"},
		"public advertise": {func(a *App) {
			a.State = &StateConfig{Redis: &RedisConfig{Address: "127.0.0.1:1"}, Advertise: "http://8.8.8.8:8281"}
		}, "loopback or private"},
		"bad advertise": {func(a *App) {
			a.State = &StateConfig{Redis: &RedisConfig{Address: "127.0.0.1:1"}, Advertise: "ftp://x"}
		}, "advertise"},
		"bad redaction pattern": {func(a *App) { a.Redaction = &RedactionConfig{Patterns: []string{"("}} }, "redaction"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			bundle := filepath.Join(dir, "b.yaml")
			_ = os.WriteFile(bundle, []byte(handlerBundle), 0o600)
			t.Setenv("T_KEY", "alice-key")
			app := &App{
				Policies:  map[string]*PolicySet{"default": {Bundles: []BundleConfig{{Path: bundle}}}},
				Identity:  &IdentityConfig{APIKeys: []APIKeyConfig{{Key: "{env.T_KEY}", Principal: "alice"}}},
				Audit:     &AuditConfig{Sinks: []SinkConfig{{Type: "sqlite", Path: filepath.Join(dir, "a.db")}}},
				Approvals: &ApprovalsConfig{Store: "file", Path: filepath.Join(dir, "ap.json")},
			}
			c.mutate(app)
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			err := app.Provision(ctx)
			_ = app.Cleanup()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want error containing %q", err, c.want)
			}
		})
	}
}

// TestUnchangedReloadSharesState: two configs with the same policy and
// audit settings share the compiled engine and the recorder, as a Caddy
// reload would.
func TestUnchangedReloadSharesState(t *testing.T) {
	dir := t.TempDir()
	bundle := filepath.Join(dir, "b.yaml")
	_ = os.WriteFile(bundle, []byte(handlerBundle), 0o600)
	mk := func() *App {
		app := &App{
			Policies: map[string]*PolicySet{"default": {Bundles: []BundleConfig{{Path: bundle}}}},
			Audit:    &AuditConfig{Sinks: []SinkConfig{{Type: "sqlite", Path: filepath.Join(dir, "a.db")}}},
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		if err := app.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		return app
	}
	oldApp, newApp := mk(), mk()
	if oldApp.engines["default"] != newApp.engines["default"] || oldApp.recorder != newApp.recorder {
		t.Fatal("an unchanged reload rebuilt pooled state")
	}
	_ = oldApp.Cleanup()
	// The survivor still records: its recorder was not closed by the old
	// config's cleanup.
	h := newTestHandler(t, newApp, &APIHandler{RouteAuth: RouteAuth{Anonymous: "dev"}})
	rec, _ := serve(t, h, httptest.NewRequest(http.MethodPost, "/action", strings.NewReader(orderBody)), nil)
	if rec.Code != 200 {
		t.Fatalf("after old cleanup: %d %s", rec.Code, rec.Body)
	}
	_ = newApp.Cleanup()
}

// TestEveryDoorValidatesPrincipalFrom: a principal_from the client could
// write refuses to load on every handler that takes one.
func TestEveryDoorValidatesPrincipalFrom(t *testing.T) {
	const bad = "{http.request.header.X-User}"
	guard := &GuardHandler{RouteAuth: RouteAuth{PrincipalFrom: bad}}
	guard.Breaker = new(GuardBreakerConfig)
	if err := guard.Validate(); err == nil || !strings.Contains(err.Error(), "principal_from") {
		t.Errorf("nomos_guard: %v", err)
	}
	if err := (&APIHandler{RouteAuth: RouteAuth{PrincipalFrom: bad}}).Validate(); err == nil {
		t.Error("nomos_api accepted it")
	}
	ui := &UIHandler{PrincipalFrom: bad}
	if err := ui.bind(newTestApp(t, nil)); err == nil || !strings.Contains(err.Error(), "principal_from") {
		t.Errorf("nomos_ui: %v", err)
	}
}
