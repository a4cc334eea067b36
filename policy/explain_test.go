package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/policy/action"
)

const explainBundle = `version: v1
rules:
  - {id: allow-read, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW, obligations: {output_max_bytes: 100}}
  - {id: deny-env, action_type: '*', resource: 'file://workspace/**/.env', decision: DENY}
  - {id: allow-docs-write, action_type: fs.write, resource: 'file://workspace/docs/**', decision: ALLOW, principals: [alice]}
  - {id: approve-src-write, action_type: fs.write, resource: 'file://workspace/src/**', decision: REQUIRE_APPROVAL, obligations: {approval_scope_class: action_type_resource}}
  - {id: git-status, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[git, status]]}}
  - {id: refund, action_type: mcp.call, resource: 'mcp://retail/refund_order', decision: ALLOW, params_match: {tool_arguments.amount: {lte: 100}}}
  - {id: api, action_type: net.http_request, resource: 'url://api.example.com/**', decision: ALLOW, obligations: {net_allowlist: [api.example.com]}}
`

func explainJSON(t *testing.T, e *Engine, a *action.Action) (*Explanation, string) {
	t.Helper()
	x := e.Explain(a)
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	return x, string(b)
}

func TestExplainAllow(t *testing.T) {
	e := mustLoad(t, "x.yaml", explainBundle)
	x, js := explainJSON(t, e, act(t, "fs.read", "file://workspace/a.txt", ""))
	if x.Decision != Allow || x.WhyDenied != nil || x.MinimalAllowingChange != "" || x.ExecAuthorization != nil {
		t.Errorf("allow explanation: %s", js)
	}
	if x.ActionID != "act-1" || x.TraceID != "trace-1" || x.PolicyBundleHash != e.Hash() || x.PolicyBundleInputs != nil {
		t.Errorf("ids/hash: %s", js)
	}
	if len(x.MatchedRuleProvenance) != 1 || x.MatchedRuleProvenance[0].BundleSource != "x.yaml#"+e.Hash() ||
		!x.MatchedRuleProvenance[0].MatchedConditions["resource"] {
		t.Errorf("provenance: %s", js)
	}
	if *x.ObligationsPreview.OutputMaxBytes != 100 {
		t.Errorf("preview: %s", js)
	}
}

func TestExplainDenyByRule(t *testing.T) {
	e := mustLoad(t, "x.yaml", explainBundle)
	x, js := explainJSON(t, e, act(t, "fs.read", "file://workspace/src/.env", ""))
	w := x.WhyDenied
	if w == nil || w.ReasonCode != ReasonDenyByRule || !w.MatchedConditions["deny_rule_match"] || w.RemediationHint != "A deny rule matched this action." {
		t.Fatalf("why_denied: %s", js)
	}
	if len(w.DenyRules) != 1 || w.DenyRules[0].RuleID != "deny-env" || !w.DenyRules[0].MatchedConditions["action_type"] {
		t.Errorf("deny_rules: %s", js)
	}
	// The overridden allow shows in provenance and in the preview.
	if len(x.MatchedRuleProvenance) != 2 || x.ObligationsPreview.OutputMaxBytes == nil {
		t.Errorf("provenance/preview: %s", js)
	}
	if !strings.Contains(x.MinimalAllowingChange, `"deny-env"`) {
		t.Errorf("minimal change: %q", x.MinimalAllowingChange)
	}
}

func TestExplainNearMiss(t *testing.T) {
	e := mustLoad(t, "x.yaml", explainBundle)
	bob := action.Identity{Principal: "bob", Agent: "coder", Environment: "dev"}
	tests := []struct {
		name string
		a    *action.Action
		want string
	}{
		{"principal", newAction(t, "fs.write", "file://workspace/docs/a.md", `{"content":"x"}`, bob),
			`Rule "allow-docs-write" would allow this action if the principal were one of [alice].`},
		{"params", act(t, "mcp.call", "mcp://retail/refund_order", `{"tool_arguments":{"amount":250}}`),
			`Rule "refund" would allow this action if params_match "tool_arguments.amount" held.`},
		{"exec", act(t, "process.exec", "file://workspace/repo", `{"argv":["git","push"]}`),
			`Rule "git-status" would allow this action if argv matched one of its exec_match patterns.`},
		{"resource", act(t, "mcp.call", "mcp://retail/refund_orders", `{"tool_arguments":{"amount":1}}`),
			`Rule "refund" would allow this action if the resource matched "mcp://retail/refund_order".`},
		{"resource of a net rule", act(t, "net.http_request", "url://evil.example.net/x", ""),
			`Rule "api" would allow this action if the resource matched "url://api.example.com/**".`},
		{"type hint for custom", act(t, "payments.refund", "payments://shop/orders/1", ""),
			"Adjust the requested action to match an allowlisted resource or request approval."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, js := explainJSON(t, e, tt.a)
			if x.ReasonCode != ReasonDenyByDefault || x.MinimalAllowingChange != tt.want {
				t.Errorf("got %q\n%s", x.MinimalAllowingChange, js)
			}
			if v, ok := x.WhyDenied.MatchedConditions["matching_allow_rule"]; !ok || v {
				t.Errorf("matched_conditions: %v", x.WhyDenied.MatchedConditions)
			}
		})
	}
}

func TestExplainTypeHints(t *testing.T) {
	e := mustLoad(t, "h.yaml", "version: v1\nrules:\n  - {id: r, action_type: mcp.call, resource: 'mcp://s/t', decision: ALLOW, principals: [nobody], agents: [none]}\n")
	tests := []struct {
		a    *action.Action
		hint string
		want string
	}{
		{act(t, "net.http_request", "url://evil.example.net:8443/x", ""), "This network destination is not currently allowed.",
			"This host is not currently allowed; use an allowlisted host, request approval, or update the network allowlist for evil.example.net:8443."},
		{act(t, "process.exec", "file://workspace/r", `{"argv":["ls"]}`), "This command is not currently allowed.",
			"Exec is restricted; use an allowlisted command or request approval."},
		{act(t, "fs.write", "file://workspace/a", `{"content":"x"}`), "This write target is not currently allowed.",
			"Write access is restricted for this resource; use an allowed path or request approval."},
		{act(t, "mcp.call", "mcp://s/t", ""), "No matching allow rule was found for this action.",
			"Adjust the requested action to match an allowlisted resource or request approval."},
	}
	for _, tt := range tests {
		x := e.Explain(tt.a)
		if x.WhyDenied.RemediationHint != tt.hint || x.MinimalAllowingChange != tt.want {
			t.Errorf("%s: %q / %q", tt.a.ActionType, x.WhyDenied.RemediationHint, x.MinimalAllowingChange)
		}
	}
}

func TestExplainApprovalAndExec(t *testing.T) {
	e := mustLoad(t, "x.yaml", explainBundle)
	x, js := explainJSON(t, e, act(t, "fs.write", "file://workspace/src/a.go", `{"content":"x"}`))
	if x.WhyDenied.RemediationHint != "This action requires approval before it can proceed." || x.MinimalAllowingChange != "Request approval for this action." ||
		x.ObligationsPreview.ApprovalScopeClass != "action_type_resource" || !x.WhyDenied.MatchedConditions["approval_rule_match"] {
		t.Errorf("approval: %s", js)
	}
	x, js = explainJSON(t, e, act(t, "process.exec", "file://workspace/repo", `{"argv":["git","status"]}`))
	if x.ExecAuthorization == nil || *x.ExecAuthorization != (ExecAuthorization{ConditionClass: "argv_pattern_match", RuntimeEnforcementHint: "derived_exec_constraints"}) {
		t.Errorf("exec authorization: %s", js)
	}
	x, _ = explainJSON(t, e, act(t, "process.exec", "file://workspace/repo", `{"argv":["ls"]}`))
	if x.ExecAuthorization.ConditionClass != "none" || x.WhyDenied.RemediationHint != "This command is not currently allowed." {
		t.Errorf("exec none: %+v %+v", x.ExecAuthorization, x.WhyDenied)
	}
}

func TestExplainConflictAndErrors(t *testing.T) {
	e := mustLoad(t, "c.yaml", `version: v1
rules:
  - {id: a, action_type: process.exec, resource: '**', decision: ALLOW, exec_match: {argv_patterns: [[ls, '**']]}}
  - {id: b, action_type: process.exec, resource: '**', decision: ALLOW, obligations: {exec_allowlist: [[ls]]}}
  - {id: n, action_type: mcp.call, resource: '**', decision: ALLOW, params_match: {n: {gt: 1}}}
`)
	x, js := explainJSON(t, e, act(t, "process.exec", "file://workspace/r", `{"argv":["ls"]}`))
	if x.ReasonCode != ReasonDenyByExecModelConflict || !x.ExecAuthorization.Conflict || x.ExecAuthorization.RuntimeEnforcementHint != "conflict" ||
		!x.WhyDenied.MatchedConditions["exec_model_conflict"] || len(x.WhyDenied.DenyRules) != 2 {
		t.Errorf("conflict: %s", js)
	}
	x, js = explainJSON(t, e, act(t, "mcp.call", "mcp://s/t", `{"n":"SECRET-VALUE-123"}`))
	if x.ReasonCode != ReasonDenyByEvaluationError || len(x.EvaluationErrors) != 1 ||
		x.EvaluationErrors[0].Message != `params_match "n": value is not a number` {
		t.Errorf("evaluation error: %s", js)
	}
	if strings.Contains(js, "SECRET-VALUE-123") {
		t.Errorf("explanation echoes params: %s", js)
	}
	if x := e.Explain(nil); x.ReasonCode != ReasonDenyByEvaluationError || x.WhyDenied == nil {
		t.Errorf("nil action: %+v", x)
	}
}

// TestExplainNeverEchoesParams feeds secrets through every decision path.
func TestExplainNeverEchoesParams(t *testing.T) {
	e := mustLoad(t, "x.yaml", explainBundle)
	const secret = "sk_live_4242424242"
	actions := []*action.Action{
		act(t, "fs.write", "file://workspace/docs/a.md", `{"content":"`+secret+`"}`),
		act(t, "fs.write", "file://workspace/src/a.md", `{"content":"`+secret+`"}`),
		act(t, "mcp.call", "mcp://retail/refund_order", `{"tool_arguments":{"amount":1,"token":"`+secret+`"}}`),
		act(t, "net.http_request", "url://api.example.com/x", `{"headers":{"Authorization":"Bearer `+secret+`"}}`),
		act(t, "process.exec", "file://workspace/r", `{"argv":["curl","-H","`+secret+`"]}`),
	}
	for _, a := range actions {
		if _, js := explainJSON(t, e, a); strings.Contains(js, secret) {
			t.Errorf("%s: %s", a.ActionType, js)
		}
	}
}

func TestExplainMultiBundleInputs(t *testing.T) {
	e, err := Load([]BundleSource{{Path: "base.yaml", Role: "baseline", Data: []byte(baseBundle)}, {Path: "org.json", Data: []byte(orgBundle)}}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	x, js := explainJSON(t, e, act(t, "fs.read", "file://workspace/a", ""))
	if len(x.PolicyBundleInputs) != 2 || len(x.PolicyBundleSources) != 2 || x.PolicyBundleInputs[0].Role != "baseline" {
		t.Errorf("inputs: %s", js)
	}
}
