package caddymodule

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

const guardBundle = `version: v1
rules:
  - id: read-api
    action_type: net.http_request
    resource: "url://api.test/v1/**"
    decision: ALLOW
    params_match:
      method: GET
  - id: capped
    action_type: net.http_request
    resource: "url://api.test/big/**"
    decision: ALLOW
    obligations:
      output_max_bytes: 12
  - id: masked
    action_type: net.http_request
    resource: "url://api.test/masked/**"
    decision: ALLOW
    obligations:
      redact: ["acct-[0-9]+"]
  - id: small-refund
    action_type: payments.refund
    resource: "payments://api.test/refunds"
    decision: ALLOW
    params_match:
      amount: {lte: 100}
  - id: large-refund
    action_type: payments.refund
    resource: "payments://api.test/refunds"
    decision: REQUIRE_APPROVAL
    params_match:
      amount: {gt: 100}
`

// newGuardApp provisions a nomos app whose default policy is guardBundle.
func newGuardApp(t testing.TB, mutate func(*App)) *App {
	t.Helper()
	bundle := filepath.Join(t.TempDir(), "guard.yaml")
	if err := os.WriteFile(bundle, []byte(guardBundle), 0o600); err != nil {
		t.Fatal(err)
	}
	return newTestApp(t, func(a *App) {
		a.Policies["default"].Bundles[0].Path = bundle
		if mutate != nil {
			mutate(a)
		}
	})
}

func newGuard(t testing.TB, app *App, h *GuardHandler) *GuardHandler {
	t.Helper()
	if h == nil {
		h = new(GuardHandler)
	}
	no := false
	h.RequireAgent = &no
	if err := h.bind(app, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	return h
}

// upstream is a next handler that records what reached it.
type upstream struct {
	calls  int
	header http.Header
	body   string
	serve  func(w http.ResponseWriter, r *http.Request) error
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.calls++
	u.header = r.Header.Clone()
	b, _ := io.ReadAll(r.Body)
	u.body = string(b)
	if u.serve != nil {
		return u.serve(w, r)
	}
	w.Header().Set("Content-Type", "application/json")
	_, err := io.WriteString(w, `{"ok":true}`)
	return err
}

// guardRequest is an authenticated request to api.test.
func guardRequest(method, target, body string) *http.Request {
	req := httptest.NewRequest(method, "http://api.test"+target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer alice-key")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// serveGuard runs req through the guard with Caddy's request replacer.
func serveGuard(t *testing.T, h *GuardHandler, req *http.Request, next caddyhttp.Handler) (*httptest.ResponseRecorder, *caddy.Replacer, error) {
	t.Helper()
	repl := caddyhttp.NewTestReplacer(req)
	ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl)
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	rec := httptest.NewRecorder()
	err := h.ServeHTTP(rec, req.WithContext(ctx), next)
	return rec, repl, err
}

func TestGuardAllowForwardsWithoutNomosCredentials(t *testing.T) {
	h := newGuard(t, newGuardApp(t, nil), nil)
	up := new(upstream)
	req := guardRequest(http.MethodGet, "/v1/orders?id=7", "")
	req.Header.Set("X-Nomos-Debug", "1")
	req.Header.Set("Accept-Encoding", "gzip")
	rec, repl, err := serveGuard(t, h, req, up)
	if err != nil || rec.Code != 200 || up.calls != 1 || rec.Body.String() != `{"ok":true}` {
		t.Fatalf("err=%v code=%d calls=%d body=%s", err, rec.Code, up.calls, rec.Body)
	}
	for _, name := range []string{"Authorization", "X-Nomos-Debug", "Accept-Encoding"} {
		if up.header.Get(name) != "" {
			t.Errorf("upstream received %s", name)
		}
	}
	for k, want := range map[string]string{"nomos.decision": "ALLOW", "nomos.principal": "alice", "nomos.rule_ids": "read-api"} {
		if got, _ := repl.GetString(k); got != want {
			t.Errorf("{%s} = %q, want %q", k, got, want)
		}
	}
}

func TestGuardDenyDoesNotCallNext(t *testing.T) {
	h := newGuard(t, newGuardApp(t, nil), nil)
	for _, req := range []*http.Request{
		guardRequest(http.MethodDelete, "/v1/orders/7", ""), // method not allowed by the rule
		guardRequest(http.MethodGet, "/admin", ""),          // no rule
	} {
		up := new(upstream)
		rec, repl, _ := serveGuard(t, h, req, up)
		if rec.Code != http.StatusForbidden || up.calls != 0 {
			t.Fatalf("%s %s: code=%d calls=%d", req.Method, req.URL, rec.Code, up.calls)
		}
		if got := decode(t, rec); got["decision"] != "DENY" || got["reason"] != "deny_by_default: denied by policy" || len(got) != 2 {
			t.Errorf("body %v", got)
		}
		if d, _ := repl.GetString("nomos.decision"); d != "DENY" {
			t.Errorf("{nomos.decision} = %q", d)
		}
	}
}

func TestGuardAuthenticationRequired(t *testing.T) {
	h := newGuard(t, newGuardApp(t, nil), nil)
	req := guardRequest(http.MethodGet, "/v1/orders", "")
	req.Header.Set("Authorization", "Bearer wrong")
	up := new(upstream)
	rec, _, _ := serveGuard(t, h, req, up)
	if rec.Code != http.StatusUnauthorized || up.calls != 0 {
		t.Fatalf("code=%d calls=%d", rec.Code, up.calls)
	}
}

func refundGuard(t *testing.T, app *App) *GuardHandler {
	return newGuard(t, app, &GuardHandler{
		ActionType: "payments.refund",
		Resource:   "payments://{http.request.host}{nomos.request.escaped_path}",
		BodyParams: map[string]string{"amount": "refund.amount"},
	})
}

func TestGuardBodyParamsAndApprovalRoundTrip(t *testing.T) {
	// reviewer decides: the requester (alice) may not approve her own action.
	app := newGuardApp(t, func(a *App) { a.Approvals.Approvers = append(a.Approvals.Approvers, "reviewer") })
	h := refundGuard(t, app)
	small := `{"refund":{"amount":40}}`
	up := new(upstream)
	rec, _, _ := serveGuard(t, h, guardRequest(http.MethodPost, "/refunds", small), up)
	if rec.Code != 200 || up.body != small {
		t.Fatalf("small refund: %d, upstream body %q", rec.Code, up.body)
	}

	large := `{"refund":{"amount":400}}`
	rec, repl, _ := serveGuard(t, h, guardRequest(http.MethodPost, "/refunds", large), up)
	got := decode(t, rec)
	id, _ := got["approval_id"].(string)
	if rec.Code != http.StatusForbidden || got["decision"] != "REQUIRE_APPROVAL" || id == "" || up.calls != 1 {
		t.Fatalf("large refund: %d %v", rec.Code, got)
	}
	if rec.Header().Get(headerApprovalID) != id {
		t.Errorf("approval id header %q", rec.Header().Get(headerApprovalID))
	}
	if p, _ := repl.GetString("nomos.approval_id"); p != id {
		t.Errorf("{nomos.approval_id} = %q", p)
	}

	retry := func(body string) int {
		req := guardRequest(http.MethodPost, "/refunds", body)
		req.Header.Set(headerApprovalID, id)
		rec, _, _ := serveGuard(t, h, req, up)
		return rec.Code
	}
	if code := retry(large); code != http.StatusForbidden {
		t.Fatalf("retry before approval: %d", code)
	}
	svc, _ := app.Service("default")
	if _, err := svc.Decide(context.Background(), []byte(fmt.Sprintf(`{"approval_id":%q,"decision":"APPROVE"}`, id)), "reviewer"); err != nil {
		t.Fatal(err)
	}
	if code := retry(`{"refund":{"amount":900}}`); code != http.StatusForbidden {
		t.Fatalf("approval reused for a different body: %d", code)
	}
	if code := retry(large); code != 200 || up.calls != 2 || up.header.Get(headerApprovalID) != "" {
		t.Fatalf("approved retry: %d calls=%d", code, up.calls)
	}
}

func TestGuardRefusesBadBodies(t *testing.T) {
	h := refundGuard(t, newGuardApp(t, nil))
	for body, want := range map[string]string{
		`{"refund":{"amount":1}`:                           "request body is not valid JSON",
		`{"refund":{"amount":1},"refund":{"amount":2}}`:    "duplicate",
		`{"refund":{"amount":1,"Amount":5000}}`:            "differ only in case",
		`{"refund":{"amount":1},"REFUND":{"amount":2}}`:    "differ only in case",
		"{\"refund\":{\"amount\":1,\"\uff41mount\":5000}}": "Unicode compatibility form",
		`{"refund":{"amount":-1e400}}`:                     "out of the range",
		strings.Repeat("x", defaultGuardMaxBody+1):         "request_too_large",
	} {
		up := new(upstream)
		rec, _, _ := serveGuard(t, h, guardRequest(http.MethodPost, "/refunds", body), up)
		if rec.Code/100 != 4 || up.calls != 0 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%.40s: %d %s", body, rec.Code, rec.Body)
		}
	}
}

func TestGuardRateLimit(t *testing.T) {
	app := newGuardApp(t, func(a *App) {
		a.Runtime = &RuntimeConfig{RateLimit: &RateLimitConfig{Events: 2, Interval: caddy.Duration(90e9)}}
	})
	h := newGuard(t, app, nil)
	up := new(upstream)
	var rec *httptest.ResponseRecorder
	for i := 0; i < 3; i++ {
		rec, _, _ = serveGuard(t, h, guardRequest(http.MethodGet, "/v1/x", ""), up)
	}
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "45" || up.calls != 2 {
		t.Fatalf("third request: %d Retry-After=%q calls=%d", rec.Code, rec.Header().Get("Retry-After"), up.calls)
	}
}

// TestGuardSSEEventByEvent checks that each event is redacted and reaches
// the client before the upstream writes the next one.
func TestGuardSSEEventByEvent(t *testing.T) {
	h := newGuard(t, newGuardApp(t, nil), nil)
	var rec *httptest.ResponseRecorder
	secret := "ghp_" + strings.Repeat("a", 36)
	up := &upstream{serve: func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Content-Length", "999")
		w.WriteHeader(200)
		io.WriteString(w, "data: one "+secret[:10])
		if strings.Contains(rec.Body.String(), "data: one") {
			return errors.New("a partial event reached the client")
		}
		io.WriteString(w, secret[10:]+"\n\n")
		if got := rec.Body.String(); got != "data: one [REDACTED]\n\n" {
			return fmt.Errorf("after the first event the client has %q", got)
		}
		_, err := io.WriteString(w, "data: two\r\n\r\n")
		return err
	}}
	req := guardRequest(http.MethodGet, "/v1/stream", "")
	repl := caddyhttp.NewTestReplacer(req)
	ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl)
	rec = httptest.NewRecorder()
	if err := h.ServeHTTP(rec, req.WithContext(ctx), up); err != nil {
		t.Fatal(err)
	}
	if rec.Body.String() != "data: one [REDACTED]\n\ndata: two\r\n\r\n" || rec.Header().Get("Content-Length") != "" || !rec.Flushed {
		t.Fatalf("body %q headers %v", rec.Body, rec.Header())
	}
}

func TestGuardPlainResponseRedactedAcrossWrites(t *testing.T) {
	h := newGuard(t, newGuardApp(t, nil), nil)
	secret := "ghp_" + strings.Repeat("b", 36)
	up := &upstream{serve: func(w http.ResponseWriter, r *http.Request) error {
		for _, part := range []string{"token=" + secret[:8], secret[8:] + "\nnext line\n", "tail"} {
			if _, err := io.WriteString(w, part); err != nil {
				return err
			}
		}
		return nil
	}}
	rec, _, err := serveGuard(t, h, guardRequest(http.MethodGet, "/v1/plain", ""), up)
	if err != nil || rec.Body.String() != "token=[REDACTED]\nnext line\ntail" {
		t.Fatalf("err=%v body %q", err, rec.Body)
	}
}

func TestGuardOutputCapEndsTheResponse(t *testing.T) {
	app := newGuardApp(t, nil)
	h := newGuard(t, app, nil)
	up := &upstream{serve: func(w http.ResponseWriter, r *http.Request) error {
		_, err := io.WriteString(w, "0123456789\nabcdefghij\n")
		return err
	}}
	rec := httptest.NewRecorder()
	req := guardRequest(http.MethodGet, "/big/file", "")
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddyhttp.NewTestReplacer(req)))
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Fatalf("panic %v, want http.ErrAbortHandler", p)
			}
		}()
		_ = h.ServeHTTP(rec, req, up)
	}()
	if rec.Body.String() != "0123456789\na" {
		t.Fatalf("client got %q, want the first 12 bytes", rec.Body)
	}
	var completions []string
	for _, ev := range guardAuditEvents(t, app) {
		if ev["event_type"] == "action.completed" {
			completions = append(completions, fmt.Sprint(ev["result_classification"]))
		}
	}
	if len(completions) != 1 || completions[0] != "OUTPUT_LIMIT" {
		t.Fatalf("completions %v, want one OUTPUT_LIMIT (the abort must not complete the action twice)", completions)
	}
}

func TestGuardRefusesCompressedResponses(t *testing.T) {
	h := newGuard(t, newGuardApp(t, nil), nil)
	up := &upstream{serve: func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(200)
		_, err := w.Write([]byte{0x1f, 0x8b, 1, 2})
		return err
	}}
	rec := httptest.NewRecorder()
	req := guardRequest(http.MethodGet, "/v1/z", "")
	ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddyhttp.NewTestReplacer(req))
	func() {
		defer func() { _ = recover() }()
		_ = h.ServeHTTP(rec, req.WithContext(ctx), up)
	}()
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), "cannot be redacted") {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
}

func TestGuardRefusesUpgrades(t *testing.T) {
	h := newGuard(t, newGuardApp(t, nil), nil)
	req := guardRequest(http.MethodGet, "/v1/ws", "")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	up := new(upstream)
	rec, _, _ := serveGuard(t, h, req, up)
	if rec.Code != http.StatusBadRequest || up.calls != 0 {
		t.Fatalf("%d calls=%d", rec.Code, up.calls)
	}
}

func TestGuardBreakerOpensOnUpstreamFailures(t *testing.T) {
	app := newGuardApp(t, nil)
	h := newGuard(t, app, &GuardHandler{Breaker: &GuardBreakerConfig{BreakerConfig: BreakerConfig{FailureThreshold: 3}}})
	failing := &upstream{serve: func(w http.ResponseWriter, r *http.Request) error {
		return caddyhttp.Error(http.StatusBadGateway, errors.New("dial tcp: connection refused"))
	}}
	for i := 0; i < 3; i++ {
		if _, _, err := serveGuard(t, h, guardRequest(http.MethodGet, "/v1/x", ""), failing); statusOf(err) != 502 {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	rec, _, _ := serveGuard(t, h, guardRequest(http.MethodGet, "/v1/x", ""), failing)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "30" || failing.calls != 3 || h.breaker.state() != "open" {
		t.Fatalf("open breaker: %d calls=%d state=%s", rec.Code, failing.calls, h.breaker.state())
	}
	if got := decode(t, rec); got["reason"] != "UPSTREAM_UNAVAILABLE: upstream circuit breaker is open" {
		t.Errorf("reason %v", got["reason"])
	}
	// A denied request never reaches the breaker.
	if rec, _, _ := serveGuard(t, h, guardRequest(http.MethodGet, "/admin", ""), failing); rec.Code != http.StatusForbidden {
		t.Errorf("denied request: %d", rec.Code)
	}
	// An unchanged reload keeps the open breaker.
	h2 := newGuard(t, app, &GuardHandler{Breaker: &GuardBreakerConfig{BreakerConfig: BreakerConfig{FailureThreshold: 3}}})
	if h2.breaker == h.breaker {
		t.Fatal("two guards of one config share a breaker")
	}
}

func TestGuardBreakerSurvivesReload(t *testing.T) {
	cfg := func() *GuardHandler {
		return &GuardHandler{Breaker: &GuardBreakerConfig{BreakerConfig: BreakerConfig{FailureThreshold: 1}}}
	}
	old := newGuard(t, newGuardApp(t, nil), cfg())
	failing := &upstream{serve: func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusInternalServerError)
		return nil
	}}
	serveGuard(t, old, guardRequest(http.MethodGet, "/v1/x", ""), failing)
	if old.breaker.state() != "open" {
		t.Fatalf("state %s after a 500", old.breaker.state())
	}
	reloaded := newGuard(t, newGuardApp(t, nil), cfg())
	if reloaded.breaker != old.breaker {
		t.Fatal("an unchanged reload built a new breaker")
	}
	changed := newGuard(t, newGuardApp(t, nil), &GuardHandler{Name: "other", Breaker: cfg().Breaker})
	if changed.breaker.state() != "closed" {
		t.Fatalf("a different guard inherited state %s", changed.breaker.state())
	}
}

func TestGuardConfigErrors(t *testing.T) {
	app := newGuardApp(t, nil)
	for name, h := range map[string]*GuardHandler{
		"credential header":        {ParamHeaders: []string{"Authorization"}},
		"nomos header":             {ParamHeaders: []string{"X-Nomos-Approval-Id"}},
		"reserved param":           {Params: map[string]string{"method": "x"}},
		"builtin on custom scheme": {Resource: "payments://{http.request.host}/"},
		"bad action type":          {ActionType: "Refund"},
		"bad body path":            {BodyParams: map[string]string{"a": "x..y"}},
		"unknown policy":           {Policy: "nope"},
	} {
		if err := h.bind(app, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestGuardCaddyfileMCPMode(t *testing.T) {
	d := caddyfile.NewTestDispenser("nomos_guard {\n\tmcp everything {\n\t\tallowed_hosts mcp.test\n\t\tmax_sessions_per_principal 2\n\t}\n}")
	h := new(GuardHandler)
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.MCP == nil || h.MCP.Server != "everything" || h.MCP.MaxSessionsPerPrincipal != 2 || len(h.MCP.AllowedHosts) != 1 {
		t.Fatalf("mcp = %+v", h.MCP)
	}
}

func TestSSEEventEnd(t *testing.T) {
	for in, want := range map[string]int{
		"data: a\n\n":     9,
		"data: a\r\n\r\n": 11,
		"data: a\r\r":     -1, // the last \r may start a \r\n
		"\n":              1,
		"data: a\n":       -1,
		"data: a\r":       -1,
		"data: a\n\ndata": 9,
		"a\nb\n\n":        5,
	} {
		if got := sseEventEnd([]byte(in)); got != want {
			t.Errorf("sseEventEnd(%q) = %d, want %d", in, got, want)
		}
	}
}

func TestPlainCutHoldsPrivateKeys(t *testing.T) {
	b := []byte("ok\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\n")
	if got := plainCut(b, false); got != 3 {
		t.Fatalf("cut at %d, want 3 (before the open key block)", got)
	}
	b = append(b, "-----END RSA PRIVATE KEY-----\n"...)
	if got := plainCut(b, false); got != len(b) {
		t.Fatalf("cut at %d, want %d", got, len(b))
	}
}

func TestGuardRefusesAmbiguousQueries(t *testing.T) {
	app := newGuardApp(t, nil)
	h := newGuard(t, app, nil)
	for _, target := range []string{"/v1/x?id=%FF", "/v1/x?a=1;b=2"} {
		up := new(upstream)
		rec, _, _ := serveGuard(t, h, guardRequest(http.MethodGet, target, ""), up)
		if rec.Code != http.StatusBadRequest || up.calls != 0 {
			t.Errorf("%s: %d calls=%d", target, rec.Code, up.calls)
		}
	}
	refused := 0
	for _, ev := range guardAuditEvents(t, app) {
		if ev["event_type"] == "action.decision" && ev["result_classification"] == "VALIDATION_ERROR" && ev["principal"] == "alice" {
			refused++
		}
	}
	if refused != 2 {
		t.Fatalf("%d refusals audited, want 2", refused)
	}
}

// guardAuditEvents reads every event of the test app's sqlite audit log.
func guardAuditEvents(t *testing.T, app *App) []map[string]any {
	t.Helper()
	if !app.after.wait(5 * time.Second) { // completions are recorded after the response
		t.Fatal("guard completions still running after 5s")
	}
	db, err := sql.Open("sqlite", app.Audit.Sinks[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT json FROM audit_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var raw string
		var ev map[string]any
		if err := rows.Scan(&raw); err != nil || json.Unmarshal([]byte(raw), &ev) != nil {
			t.Fatalf("audit row: %v", err)
		}
		out = append(out, ev)
	}
	return out
}

func TestGuardAuditsDecisionBeforeNextAndCompletion(t *testing.T) {
	app := newGuardApp(t, nil)
	h := newGuard(t, app, nil)
	var seenAtNext []map[string]any
	up := &upstream{serve: func(w http.ResponseWriter, r *http.Request) error {
		seenAtNext = guardAuditEvents(t, app)
		_, err := io.WriteString(w, "hello\n")
		return err
	}}
	rec, _, _ := serveGuard(t, h, guardRequest(http.MethodGet, "/v1/x", ""), up)
	id := rec.Header().Get(headerActionID)
	if len(seenAtNext) == 0 || seenAtNext[len(seenAtNext)-1]["event_type"] != "action.decision" || seenAtNext[len(seenAtNext)-1]["action_id"] != id {
		t.Fatalf("the decision was not recorded before next ran: %v", seenAtNext)
	}
	evs := guardAuditEvents(t, app)
	done := evs[len(evs)-2]
	meta, _ := done["executor_metadata"].(map[string]any)
	if done["event_type"] != "action.completed" || done["result_classification"] != "SUCCESS" ||
		meta["status_code"] != float64(200) || meta["bytes_written"] != float64(6) || meta["execution_mode"] != "http_forwarded" || meta["guard"] != "guard" {
		t.Fatalf("completion %v", done)
	}
}

func TestProxyBreaker(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	b := &ProxyBreaker{Name: "orders", GuardBreakerConfig: GuardBreakerConfig{BreakerConfig: BreakerConfig{FailureThreshold: 2}}}
	if err := b.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Cleanup()
	b.RecordMetric(200, 0)
	b.RecordMetric(502, 0)
	if !b.OK() {
		t.Fatal("open after one failure")
	}
	b.RecordMetric(500, 0)
	if b.OK() || b.OK() {
		t.Fatal("still OK after two failures")
	}
	if err := new(ProxyBreaker).Provision(ctx); err == nil {
		t.Fatal("a breaker without a name was accepted")
	}
}

func TestGuardLatencyThresholdCountsSlowAnswers(t *testing.T) {
	h := newGuard(t, newGuardApp(t, nil), &GuardHandler{Breaker: &GuardBreakerConfig{
		BreakerConfig:    BreakerConfig{FailureThreshold: 2},
		LatencyThreshold: caddy.Duration(1), // every real answer is slower than 1ns
	}})
	up := new(upstream)
	for i := 0; i < 2; i++ {
		if rec, _, _ := serveGuard(t, h, guardRequest(http.MethodGet, "/v1/x", ""), up); rec.Code != 200 {
			t.Fatalf("slow answer %d did not reach the client: %d", i, rec.Code)
		}
	}
	if h.breaker.state() != "open" {
		t.Fatalf("state %s after two slow answers", h.breaker.state())
	}
}

func TestGuardBreakerIgnoresClientsThatLeave(t *testing.T) {
	h := newGuard(t, newGuardApp(t, nil), &GuardHandler{Breaker: &GuardBreakerConfig{BreakerConfig: BreakerConfig{FailureThreshold: 1}}})
	req := guardRequest(http.MethodGet, "/v1/x", "")
	ctx, cancel := context.WithCancel(req.Context())
	req = req.WithContext(ctx)
	gone := &upstream{serve: func(w http.ResponseWriter, r *http.Request) error {
		cancel() // the client leaves while the upstream is dialed
		return caddyhttp.Error(http.StatusBadGateway, errors.New("dial aborted"))
	}}
	serveGuard(t, h, req, gone)
	if h.breaker.state() != "closed" {
		t.Fatalf("a canceled request moved the breaker to %s", h.breaker.state())
	}
}

func TestGuardBreakerOff(t *testing.T) {
	h := newGuard(t, newGuardApp(t, nil), &GuardHandler{Breaker: &GuardBreakerConfig{BreakerConfig: BreakerConfig{Disabled: true}}})
	failing := &upstream{serve: func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusInternalServerError)
		return nil
	}}
	for i := 0; i < 8; i++ {
		serveGuard(t, h, guardRequest(http.MethodGet, "/v1/x", ""), failing)
	}
	if failing.calls != 8 || h.breaker.state() != "disabled" {
		t.Fatalf("calls=%d state=%s", failing.calls, h.breaker.state())
	}
}

func TestGuardRedactObligationAndTraceID(t *testing.T) {
	app := newGuardApp(t, nil)
	h := newGuard(t, app, nil)
	up := &upstream{serve: func(w http.ResponseWriter, r *http.Request) error {
		_, err := io.WriteString(w, "owner acct-12345 ok\n")
		return err
	}}
	req := guardRequest(http.MethodGet, "/masked/a", "")
	req.Header.Set(headerTraceID, "task-42")
	rec, _, _ := serveGuard(t, h, req, up)
	if rec.Body.String() != "owner [REDACTED] ok\n" || up.header.Get(headerTraceID) != "" {
		t.Fatalf("body %q, upstream trace header %q", rec.Body, up.header.Get(headerTraceID))
	}
	for _, ev := range guardAuditEvents(t, app) {
		if ev["action_id"] == rec.Header().Get(headerActionID) && ev["trace_id"] != "task-42" {
			t.Fatalf("event %v not in the client's trace", ev["event_type"])
		}
	}
	req = guardRequest(http.MethodGet, "/masked/a", "")
	req.Header.Set(headerTraceID, "bad trace id")
	if rec, _, _ := serveGuard(t, h, req, up); rec.Code != http.StatusBadRequest {
		t.Fatalf("invalid trace id: %d", rec.Code)
	}
}

func TestGuardCleanupReleasesBreaker(t *testing.T) {
	app := newGuardApp(t, nil)
	h := new(GuardHandler)
	if err := h.bind(app, nil); err != nil {
		t.Fatal(err)
	}
	if n, ok := pool.References(h.poolKey); !ok || n != 1 {
		t.Fatalf("references %d %v after provision", n, ok)
	}
	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if _, ok := pool.References(h.poolKey); ok {
		t.Fatal("breaker still pooled after the last guard was cleaned up")
	}
}

// TestGuardStateUnavailableIs503: a decision that needs the shared state
// while Redis is unreachable is refused (and audited) as a DENY
// state_unavailable, answered 503 with Retry-After, not the 403 of a
// policy denial: the client may retry the same request.
func TestGuardStateUnavailableIs503(t *testing.T) {
	app := newGuardApp(t, func(a *App) {
		a.State = &StateConfig{Redis: &RedisConfig{Address: "127.0.0.1:1", KeyPrefix: "guard-test:"}}
		a.Approvals.Store, a.Approvals.Path = "redis", ""
	})
	h := refundGuard(t, app)
	up := new(upstream)
	rec, _, _ := serveGuard(t, h, guardRequest(http.MethodPost, "/refunds", `{"refund":{"amount":400}}`), up)
	got := decode(t, rec)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || got["decision"] != "DENY" ||
		!strings.HasPrefix(fmt.Sprint(got["reason"]), "state_unavailable: ") || up.calls != 0 {
		t.Fatalf("got %d %v (Retry-After %q, upstream calls %d)", rec.Code, got, rec.Header().Get("Retry-After"), up.calls)
	}
	found := false
	for _, ev := range guardAuditEvents(t, app) {
		found = found || (ev["event_type"] == "action.decision" && ev["decision"] == "DENY" && ev["reason"] == "state_unavailable")
	}
	if !found {
		t.Error("the refusal is not audited")
	}
}

// TestGuardResourceTemplatesSeeThePathSent: a resource template must not
// use a decoded path placeholder (a request's %3F would cut the resource
// policy sees: /v1/x%3F/../../admin was decided as /v1/x), and a resource
// that would carry a query or fragment is refused, never cut.
func TestGuardResourceTemplatesSeeThePathSent(t *testing.T) {
	app := newGuardApp(t, nil)
	for _, res := range []string{"url://api.test{http.request.uri.path}", "url://api.test{http.request.uri}", "url://api.test{http.request.orig_uri.path}"} {
		h := &GuardHandler{Resource: res}
		no := false
		h.RequireAgent = &no
		if err := h.bind(app, nil); err == nil || !strings.Contains(err.Error(), "{nomos.request.escaped_path}") {
			t.Errorf("%s: %v", res, err)
		}
	}
	h := newGuard(t, app, &GuardHandler{Resource: "url://api.test{nomos.request.escaped_path}"})
	up := new(upstream)
	rec, _, _ := serveGuard(t, h, guardRequest(http.MethodGet, "/v1/x%3F/../../../admin/users", ""), up)
	if rec.Code != http.StatusBadRequest || up.calls != 0 {
		t.Fatalf("a path hiding dot segments behind %%3F: %d %s", rec.Code, rec.Body)
	}
	if rec, _, _ := serveGuard(t, h, guardRequest(http.MethodGet, "/v1/orders", ""), up); rec.Code != 200 {
		t.Fatalf("a plain path: %d %s", rec.Code, rec.Body)
	}
	cut := newGuard(t, app, &GuardHandler{Resource: "url://api.test/v1/{http.request.header.X-Item}"})
	req := guardRequest(http.MethodGet, "/v1/orders", "")
	req.Header.Set("X-Item", "orders?admin=1")
	if rec, _, _ := serveGuard(t, cut, req, up); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "query or fragment") {
		t.Fatalf("a resource with a query: %d %s", rec.Code, rec.Body)
	}
}

// TestGuardRefusesFormMethodOverride: Rails, Laravel and Symfony run a
// POST whose form body carries _method=DELETE as a DELETE; policy decided
// a POST, so the guard refuses such a body, urlencoded or multipart.
func TestGuardRefusesFormMethodOverride(t *testing.T) {
	h := newGuard(t, newGuardApp(t, nil), nil)
	up := new(upstream)
	for name, c := range map[string]struct{ ct, body string }{
		"urlencoded":         {"application/x-www-form-urlencoded", "id=7&_method=DELETE"},
		"encoded key":        {"application/x-www-form-urlencoded", "id=7&%5Fmethod=DELETE"},
		"multipart":          {"multipart/form-data; boundary=XX", "--XX\r\nContent-Disposition: form-data; name=\"_METHOD\"\r\n\r\nDELETE\r\n--XX--\r\n"},
		"encoded letters":    {"application/x-www-form-urlencoded", "id=7&_m%65thod=DELETE"},
		"all encoded":        {"application/x-www-form-urlencoded", "%5F%6D%65%74%68%6F%64=DELETE"},
		"PHP dot":            {"application/x-www-form-urlencoded", ".method=DELETE"},
		"PHP array":          {"application/x-www-form-urlencoded", "_method[]=DELETE"},
		"multipart bad type": {"multipart/form-data; boundary=XX; foo", "--XX\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--XX--\r\n"},
		"JSON (Laravel)":     {"application/json", `{"_method":"DELETE","id":7}`},
		"JSON escaped":       {"application/json", `{"\u005f\u006D\u0065\u0074\u0068\u006f\u0064":"DELETE"}`},
	} {
		req := guardRequest(http.MethodGet, "/v1/orders", c.body)
		req.Header.Set("Content-Type", c.ct)
		if rec, _, _ := serveGuard(t, h, req, up); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "_method") {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
	if up.calls != 0 {
		t.Fatal("a refused request reached the upstream")
	}
	req := guardRequest(http.MethodGet, "/v1/orders", `{"note":"the _method field is ours"}`)
	if rec, _, _ := serveGuard(t, h, req, up); rec.Code != 200 {
		t.Fatalf("a JSON body mentioning _method: %d %s", rec.Code, rec.Body)
	}
}
