package caddymodule

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/internal/pins"
)

const uiBundle = `version: v1
rules:
  - id: refund-needs-approval
    action_type: payments.refund
    resource: "payments://**"
    decision: REQUIRE_APPROVAL
`

// Keys of the UI test principals: reviewer is an approver and decider,
// auditor only reads, mallory is authenticated but has no UI role.
const (
	reviewerKey = "reviewer-key-0123456789"
	auditorKey  = "auditor-key-0123456789"
	malloryKey  = "mallory-key-0123456789"
)

// uiFixture is a provisioned app with a pending approval created by a
// real action through nomos_api, and a UI handler bound to it.
type uiFixture struct {
	app        *App
	ui         *UIHandler
	approvalID string
}

func newUIFixture(t *testing.T, ui *UIHandler) *uiFixture {
	t.Helper()
	app := newTestApp(t, func(a *App) {
		bundle := filepath.Join(t.TempDir(), "ui.yaml")
		if err := os.WriteFile(bundle, []byte(uiBundle), 0o600); err != nil {
			t.Fatal(err)
		}
		a.Policies["default"].Bundles = []BundleConfig{{Path: bundle}}
		a.Identity.APIKeys = append(a.Identity.APIKeys, APIKeyConfig{Key: reviewerKey, Principal: "reviewer"},
			APIKeyConfig{Key: auditorKey, Principal: "auditor"}, APIKeyConfig{Key: malloryKey, Principal: "mallory"})
		a.Approvals.Approvers = []string{"reviewer"}
	})
	api := newTestHandler(t, app, nil)
	rec, _ := serve(t, api, signed(`{"schema_version":"v1","action_id":"r1","trace_id":"t-refund","action_type":"payments.refund","resource":"payments://shop/1","params":{"amount":500,"note":"agent-secret-value"},"context":{}}`), nil)
	resp := decode(t, rec)
	if resp["decision"] != "REQUIRE_APPROVAL" {
		t.Fatalf("setup action: %v", resp)
	}
	if ui == nil {
		ui = &UIHandler{Readers: []string{"reviewer", "auditor"}}
	}
	if err := ui.bind(app); err != nil {
		t.Fatal(err)
	}
	if err := ui.openEvents(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ui.Cleanup() })
	return &uiFixture{app: app, ui: ui, approvalID: resp["approval_id"].(string)}
}

// do sends one request to the UI handler as Caddy's server would.
func (f *uiFixture) do(t *testing.T, method, path, key string, body string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	rec := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusTeapot)
		return nil
	})
	if err := f.ui.ServeHTTP(rec, req.WithContext(ctx), next); err != nil {
		t.Fatal(err)
	}
	return rec
}

// decideHeaders are what the page sends: JSON and the principal's token.
func (f *uiFixture) decideHeaders(principal string) map[string]string {
	return map[string]string{"Content-Type": "application/json", uiCSRFHeader: f.ui.csrfToken(principal)}
}

func (f *uiFixture) decideBody() string {
	return `{"approval_id":"` + f.approvalID + `","decision":"APPROVE"}`
}

var uiReadEndpoints = []string{"/api/ui/readiness", "/api/ui/approvals", "/api/ui/events", "/api/ui/trace?trace_id=t-refund", "/api/ui/upstreams"}

func TestUIAuthentication(t *testing.T) {
	f := newUIFixture(t, nil)
	for _, path := range append([]string{"/api/ui/session"}, uiReadEndpoints...) {
		for _, key := range []string{"", "wrong-key-0123456789"} {
			if rec := f.do(t, http.MethodGet, path, key, "", nil); rec.Code != http.StatusUnauthorized {
				t.Errorf("GET %s with key %q: %d, want 401", path, key, rec.Code)
			}
		}
	}
	if rec := f.do(t, http.MethodPost, "/api/ui/approvals/decide", "", f.decideBody(), f.decideHeaders("reviewer")); rec.Code != http.StatusUnauthorized {
		t.Errorf("decide without credentials: %d", rec.Code)
	}
	// A principal from an earlier Caddy authentication handler.
	ui := &UIHandler{Readers: []string{"reviewer"}, PrincipalFrom: "{http.auth.user.id}"}
	g := newUIFixture(t, ui)
	req := httptest.NewRequest(http.MethodGet, "/api/ui/session", nil)
	repl := caddy.NewReplacer()
	repl.Set("http.auth.user.id", "reviewer")
	ctx := context.WithValue(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl), caddyhttp.VarsCtxKey, map[string]any{})
	rec := httptest.NewRecorder()
	if err := g.ui.ServeHTTP(rec, req.WithContext(ctx), nil); err != nil || rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"principal":"reviewer"`) {
		t.Fatalf("principal_from: %d %s %v", rec.Code, rec.Body, err)
	}
}

func TestUIAuthorization(t *testing.T) {
	f := newUIFixture(t, nil)
	rec := f.do(t, http.MethodGet, "/api/ui/session", malloryKey, "", nil)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"can_read":false`) {
		t.Fatalf("session of a principal without a role: %d %s", rec.Code, rec.Body)
	}
	for _, path := range uiReadEndpoints {
		if rec := f.do(t, http.MethodGet, path, malloryKey, "", nil); rec.Code != http.StatusForbidden {
			t.Errorf("mallory GET %s: %d, want 403", path, rec.Code)
		}
		if rec := f.do(t, http.MethodGet, path, auditorKey, "", nil); rec.Code != http.StatusOK {
			t.Errorf("auditor GET %s: %d %s", path, rec.Code, rec.Body)
		}
	}
	// Reading is not deciding.
	rec = f.do(t, http.MethodPost, "/api/ui/approvals/decide", auditorKey, f.decideBody(), f.decideHeaders("auditor"))
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "may not decide") {
		t.Fatalf("auditor decided: %d %s", rec.Code, rec.Body)
	}
	if got := f.status(t); got != approvals.Pending {
		t.Fatalf("approval is %s after a refused decision", got)
	}
	rec = f.do(t, http.MethodPost, "/api/ui/approvals/decide", reviewerKey, f.decideBody(), f.decideHeaders("reviewer"))
	if rec.Code != http.StatusOK || f.status(t) != approvals.Approved {
		t.Fatalf("reviewer decide: %d %s", rec.Code, rec.Body)
	}
	f.assertDecidedAudited(t, "reviewer")
}

// TestUIDecideUsesApproverCheck: a UI decider who is not an approver of
// the app is refused by the same check as POST /approvals/decide.
func TestUIDecideUsesApproverCheck(t *testing.T) {
	f := newUIFixture(t, &UIHandler{Readers: []string{"auditor"}, Deciders: []string{"auditor"}})
	rec := f.do(t, http.MethodPost, "/api/ui/approvals/decide", auditorKey, f.decideBody(), f.decideHeaders("auditor"))
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "approval_forbidden: principal is not an approver") {
		t.Fatalf("non-approver decider: %d %s", rec.Code, rec.Body)
	}
	if got := f.status(t); got != approvals.Pending {
		t.Fatalf("approval is %s", got)
	}
}

func TestUICSRF(t *testing.T) {
	f := newUIFixture(t, nil)
	good := f.decideHeaders("reviewer")
	with := func(k, v string) map[string]string {
		h := map[string]string{}
		for a, b := range good {
			h[a] = b
		}
		if v == "" {
			delete(h, k)
		} else {
			h[k] = v
		}
		return h
	}
	cases := map[string]map[string]string{
		"no token":                  with(uiCSRFHeader, ""),
		"another principal's token": with(uiCSRFHeader, f.ui.csrfToken("auditor")),
		"forged token":              with(uiCSRFHeader, strings.Repeat("0", 64)),
		"form content type":         with("Content-Type", "application/x-www-form-urlencoded"),
		"cross-site fetch":          with("Sec-Fetch-Site", "cross-site"),
		"foreign origin":            with("Origin", "https://evil.example"),
	}
	for name, hdr := range cases {
		rec := f.do(t, http.MethodPost, "/api/ui/approvals/decide", reviewerKey, f.decideBody(), hdr)
		if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "csrf") {
			t.Errorf("%s: %d %s, want 403 csrf", name, rec.Code, rec.Body)
		}
	}
	if got := f.status(t); got != approvals.Pending {
		t.Fatalf("a CSRF-refused request changed the approval to %s", got)
	}
	// The explain form is a POST too.
	if rec := f.do(t, http.MethodPost, "/api/ui/explain", reviewerKey, `{"action":{}}`, with(uiCSRFHeader, "")); rec.Code != http.StatusForbidden {
		t.Errorf("explain without token: %d", rec.Code)
	}
	rec := f.do(t, http.MethodPost, "/api/ui/approvals/decide", reviewerKey, f.decideBody(), with("Origin", "http://example.com"))
	if rec.Code != http.StatusOK {
		t.Fatalf("same-origin decide: %d %s", rec.Code, rec.Body)
	}
}

// TestUINoSecretInPayloads: no API key or agent secret appears in any
// answer, although the pending action's params carried the agent secret.
func TestUINoSecretInPayloads(t *testing.T) {
	f := newUIFixture(t, nil)
	secrets := []string{"alice-key", reviewerKey, auditorKey, malloryKey, "agent-secret-value"}
	for _, path := range append([]string{"/api/ui/session"}, uiReadEndpoints...) {
		rec := f.do(t, http.MethodGet, path, reviewerKey, "", nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		for _, s := range secrets {
			if strings.Contains(rec.Body.String(), s) {
				t.Errorf("GET %s leaks %q", path, s)
			}
		}
	}
	rec := f.do(t, http.MethodGet, "/api/ui/approvals", reviewerKey, "", nil)
	if !strings.Contains(rec.Body.String(), `\"amount\":500`) {
		t.Fatalf("the inbox lacks the params preview: %s", rec.Body)
	}
}

func TestUIExplainRunsNothing(t *testing.T) {
	f := newUIFixture(t, nil)
	body := `{"action":{"schema_version":"v1","action_id":"x1","trace_id":"t-explain","action_type":"payments.refund","resource":"payments://shop/2","params":{"amount":9},"context":{}},"principal":"alice","agent":"bot"}`
	rec := f.do(t, http.MethodPost, "/api/ui/explain", auditorKey, body, f.decideHeaders("auditor"))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"decision":"REQUIRE_APPROVAL"`) {
		t.Fatalf("explain: %d %s", rec.Code, rec.Body)
	}
	pending, _ := f.app.approvals.List(context.Background(), approvals.Filter{Status: approvals.Pending})
	page, _ := f.ui.events.Search(context.Background(), audit.SearchQuery{TraceID: "t-explain"})
	if len(pending) != 1 || len(page.Events) != 0 {
		t.Fatalf("explain had effects: %d pending, %d events", len(pending), len(page.Events))
	}
}

func TestUIEventsSearchValidation(t *testing.T) {
	f := newUIFixture(t, nil)
	for _, q := range []string{"since=yesterday", "before=-1", "limit=0", "limit=5000"} {
		if rec := f.do(t, http.MethodGet, "/api/ui/events?"+q, reviewerKey, "", nil); rec.Code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, rec.Code)
		}
	}
	rec := f.do(t, http.MethodGet, "/api/ui/events?principal=alice&decision=require_approval&limit=1", reviewerKey, "", nil)
	if rec.Code != http.StatusOK || strings.Count(rec.Body.String(), `"event_id"`) != 1 || !strings.Contains(rec.Body.String(), `"next"`) {
		t.Fatalf("search: %d %s", rec.Code, rec.Body)
	}
}

// TestUIAssets: the page loads with a strict CSP, its HTML has no inline
// script or external reference, and other paths pass through.
func TestUIAssets(t *testing.T) {
	f := newUIFixture(t, nil)
	rec := f.do(t, http.MethodGet, "/ui/", "", "", nil)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("index: %d %v", rec.Code, rec.Header())
	}
	html := rec.Body.String()
	if regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]+</script>|<script>`).MatchString(html) || strings.Contains(html, " on") && regexp.MustCompile(`\son[a-z]+=`).MatchString(html) {
		t.Fatal("index.html has inline script or event handler attributes")
	}
	for _, name := range []string{"index.html", "app.js", "app.css"} {
		data, _ := uiAssets.ReadFile("ui/" + name)
		if regexp.MustCompile(`(?i)(src|href)=["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//|fonts\.googleapis`).Match(data) {
			t.Errorf("%s references an external resource", name)
		}
	}
	if rec := f.do(t, http.MethodGet, "/ui", "", "", nil); rec.Code != http.StatusMovedPermanently {
		t.Errorf("/ui: %d", rec.Code)
	}
	if rec := f.do(t, http.MethodGet, "/ui/secret.txt", "", "", nil); rec.Code != http.StatusNotFound {
		t.Errorf("unknown asset: %d", rec.Code)
	}
	if rec := f.do(t, http.MethodGet, "/elsewhere", "", "", nil); rec.Code != http.StatusTeapot {
		t.Errorf("other path did not reach next: %d", rec.Code)
	}
}

func (f *uiFixture) status(t *testing.T) string {
	t.Helper()
	rec, err := f.app.approvals.Get(context.Background(), f.approvalID)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Status
}

func (f *uiFixture) assertDecidedAudited(t *testing.T, by string) {
	t.Helper()
	page, err := f.ui.events.Search(context.Background(), audit.SearchQuery{EventType: audit.EventApprovalDecided})
	if err != nil || len(page.Events) != 1 || page.Events[0].Principal != by || page.Events[0].ApprovalID != f.approvalID {
		t.Fatalf("approval.decided not audited: %+v %v", page.Events, err)
	}
}

// TestUISlotsOnlyAfterAuthentication: the UI takes one of the slots the
// app's doors share only once its caller is authenticated and its body
// read, so a client trickling a body without credentials cannot hold it.
func TestUISlotsOnlyAfterAuthentication(t *testing.T) {
	f := newUIFixture(t, nil)
	f.app.slots = make(chan struct{}, 1)
	for _, key := range []string{"", reviewerKey} {
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			req := httptest.NewRequest(http.MethodPost, "/api/ui/explain", pr)
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
			_ = f.ui.ServeHTTP(httptest.NewRecorder(), req.WithContext(ctx), nil)
		}()
		if key != "" {
			_, _ = pw.Write([]byte("{")) // the handler is reading the body
		}
		if !f.app.acquire() {
			t.Fatalf("a UI request (key %q) whose body has not arrived holds the only slot", key)
		}
		f.app.release()
		_ = pw.CloseWithError(io.ErrUnexpectedEOF)
		<-done
	}
}

// TestUIPinDecisionNeedsAnApprover: as for approvals, a decider who is not
// one of the app's approvers cannot accept a tool definition.
func TestUIPinDecisionNeedsAnApprover(t *testing.T) {
	f := newUIFixture(t, &UIHandler{Readers: []string{"auditor"}, Deciders: []string{"auditor"}})
	f.app.pins = pins.NewMemory()
	body := `{"upstream":"retail","tool":"refund","fingerprint":"sha256:` + strings.Repeat("a", 64) + `","decision":"accept"}`
	rec := f.do(t, http.MethodPost, "/api/ui/pins/decide", auditorKey, body, f.decideHeaders("auditor"))
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "not an approver") {
		t.Fatalf("a non-approver decider: %d %s", rec.Code, rec.Body)
	}
}
