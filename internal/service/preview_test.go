package service

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// upperRedactor stands in for the operator's redactor: it hides "hunter2".
type upperRedactor struct{}

func (upperRedactor) String(s string) string { return strings.ReplaceAll(s, "hunter2", "[REDACTED]") }

// TestApprovalKeepsRedactedPreview: the pending approval carries the
// params as the redactor leaves them, so a reviewer sees what they
// approve and never the secret.
func TestApprovalKeepsRedactedPreview(t *testing.T) {
	f := newFixture(t, true)
	f.svc.cfg.Redactor = upperRedactor{}
	params := map[string]any{"amount": 500, "note": "password hunter2"}
	resp, err := f.svc.Process(context.Background(), body("p1", "payments.refund", "payments://shop/9", params, ""), alice)
	if err != nil || resp.Decision != policy.RequireApproval {
		t.Fatalf("%+v %v", resp, err)
	}
	rec, err := f.store.Get(context.Background(), resp.ApprovalID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rec.ParamsPreview, `"amount":500`) || !strings.Contains(rec.ParamsPreview, "[REDACTED]") ||
		strings.Contains(rec.ParamsPreview, "hunter2") {
		t.Fatalf("preview %q", rec.ParamsPreview)
	}
	if len(rec.ParamsPreview) > approvals.MaxPreviewBytes {
		t.Fatalf("preview longer than the cap")
	}
}

// TestCutPreviewLeadsWithTheDecisiveParams: the agent chooses the keys of
// its params, so it could pad ahead of the one that matters and leave it
// past the cut. A preview too long to show whole starts with the values
// the deciding rules' params_match paths name, and says it was cut.
func TestCutPreviewLeadsWithTheDecisiveParams(t *testing.T) {
	f := newFixture(t, true)
	f.svc.cfg.Redactor = upperRedactor{}
	params := map[string]any{"aaa_note": "routine goodwill refund, password hunter2 " + strings.Repeat("x", 1100), "amount": 500000}
	resp, err := f.svc.Process(context.Background(), body("p1", "payments.refund", "payments://shop/9", params, ""), alice)
	if err != nil || resp.Decision != policy.RequireApproval {
		t.Fatalf("%+v %v", resp, err)
	}
	rec, _ := f.store.Get(context.Background(), resp.ApprovalID)
	p := rec.ParamsPreview
	if !strings.HasPrefix(p, "amount: 500000\nparams (") || !strings.Contains(p, "bytes, cut to fit)") ||
		!strings.HasSuffix(p, "…") || strings.Contains(p, "hunter2") || len(p) > approvals.MaxPreviewBytes {
		t.Fatalf("cut preview (%d bytes): %q", len(p), p)
	}
}

// TestClassScopeKeyBindsAllButParams: a class-scoped approval covers other
// params, never another tool definition (an mcp.call approved for one
// definition of a tool must not run its changed definition) nor another
// resolution; and the key is a tuple no resource spelling can forge.
func TestClassScopeKeyBindsAllButParams(t *testing.T) {
	mk := func(resource, tool string, resolved ...string) *run {
		env := &action.Envelope{SchemaVersion: action.SchemaVersion, ActionID: "a1", TraceID: "t1",
			ActionType: action.TypeMCPCall, Resource: resource, Params: json.RawMessage(`{"tool_arguments":{}}`)}
		a, err := action.New(env.WithToolDefinition(tool), action.Identity{Principal: "alice", Environment: "dev"})
		if err != nil {
			t.Fatal(err)
		}
		r := &run{a: a, resolved: resolved}
		r.d.Obligations.ApprovalScopeClass = scopeClassActionResource
		return r
	}
	fpA, fpB := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	_, ka := scope(mk("mcp://crm/lookup", fpA))
	_, kb := scope(mk("mcp://crm/lookup", fpB))
	_, kr := scope(mk("mcp://crm/lookup", fpA, "src/x"))
	if ka == kb || ka == kr {
		t.Fatalf("class keys do not bind the tool definition or the resolved paths: %s %s %s", ka, kb, kr)
	}
	var tuple []string
	if json.Unmarshal([]byte(ka), &tuple) != nil || len(tuple) != 4 || tuple[2] != fpA {
		t.Fatalf("class key %s", ka)
	}
}

// TestRedirectHopsAreDecided: a redirect hop of a net.http_request is
// refused when a DENY rule names its resource, or a rule asks approval for
// it (the approval was for the first resource); a hop no rule names is
// left to the decision's redirect obligations.
func TestRedirectHopsAreDecided(t *testing.T) {
	eng, err := policy.Load([]policy.BundleSource{{Path: "r.yaml", Data: []byte(`version: v1
rules:
  - id: api
    action_type: net.http_request
    resource: "url://api.example.com/public/**"
    decision: ALLOW
  - id: admin
    action_type: net.http_request
    resource: "url://api.example.com/admin/**"
    decision: DENY
  - id: pay
    action_type: net.http_request
    resource: "url://api.example.com/pay/**"
    decision: REQUIRE_APPROVAL
`)}}, policy.LoadOptions{Environment: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, false, func(c *Config) { c.Policy = eng })
	env := &action.Envelope{SchemaVersion: action.SchemaVersion, ActionID: "h1", TraceID: "t1",
		ActionType: action.TypeNetHTTPRequest, Resource: "url://api.example.com/public/x", Params: json.RawMessage(`{"method":"GET"}`)}
	a, err := action.New(env, action.Identity{Principal: "alice", Agent: "bot", Environment: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	hop := f.svc.redirectHop(a)
	for res, refused := range map[string]bool{
		"url://api.example.com/public/y": false, "url://api.example.com/other": false,
		"url://api.example.com/admin/users": true, "url://api.example.com/pay/1": true,
	} {
		if got := hop(res) != nil; got != refused {
			t.Errorf("%s: refused %v, want %v", res, got, refused)
		}
	}
}

// TestPreviewShowsInvisibleCharacters: a reviewer reads the params as the
// bytes are: a right-to-left override or a zero-width space is shown
// escaped, never applied ("\u202e10000" must not display as "00001").
func TestPreviewShowsInvisibleCharacters(t *testing.T) {
	f := newFixture(t, true)
	params := map[string]any{"amount": 500, "to": "acct-\u202e10000\u202c", "memo": "a\u200bb\U000E0041"}
	resp, err := f.svc.Process(context.Background(), body("p1", "payments.refund", "payments://shop/9", params, ""), alice)
	if err != nil || resp.Decision != policy.RequireApproval {
		t.Fatalf("%+v %v", resp, err)
	}
	rec, _ := f.store.Get(context.Background(), resp.ApprovalID)
	p := rec.ParamsPreview
	if strings.ContainsFunc(p, action.Invisible) || !strings.Contains(p, `\u202e10000\u202c`) || !strings.Contains(p, `a\u200bb\udb40\udc41`) {
		t.Fatalf("preview %q", p)
	}
}
