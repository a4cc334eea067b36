package policy

import (
	"math/rand"
	"testing"

	"github.com/caddy-nomos/nomos/policy/action"
)

const evalBundle = `version: v1
rules:
  - {id: allow-read, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW}
  - {id: allow-read-src, action_type: fs.read, resource: 'file://workspace/src/**', decision: ALLOW, principals: [alice]}
  - {id: deny-env, action_type: '*', resource: 'file://workspace/**/.env*', decision: DENY}
  - {id: deny-pem, action_type: '*', resource: 'file://workspace/**/*.pem', decision: DENY}
  - {id: approve-write, action_type: fs.write, resource: 'file://workspace/src/**', decision: REQUIRE_APPROVAL}
  - {id: allow-write-docs, action_type: fs.write, resource: 'file://workspace/docs/**', decision: ALLOW, agents: [coder], environments: [dev, local]}
  - {id: deny-writes-prod, action_type: '*', resource: '**', decision: DENY, environments: [prod], risk_flags: [risk.write]}
  - {id: git-status, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[git, status, '-**']]}}
  - {id: legacy-ls, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, obligations: {exec_allowlist: [[ls]]}}
  - {id: legacy-cat, action_type: process.exec, resource: 'file://workspace/tmp/**', decision: ALLOW, obligations: {exec_allowlist: [[cat]]}}
  - {id: refund-small, action_type: mcp.call, resource: 'mcp://retail/refund_order', decision: ALLOW, params_match: {tool_arguments.amount: {lte: 100}}}
  - {id: refund-large, action_type: mcp.call, resource: 'mcp://retail/refund_order', decision: REQUIRE_APPROVAL, params_match: {tool_arguments.amount: {gt: 100}}}
`

func TestEvaluateReasonCodes(t *testing.T) {
	e := mustLoad(t, "eval.yaml", evalBundle)
	bob := action.Identity{Principal: "bob", Agent: "coder", Environment: "dev"}
	prod := action.Identity{Principal: "alice", Agent: "coder", Environment: "prod"}
	tests := []struct {
		name     string
		a        *action.Action
		decision string
		reason   string
		ids      []string
	}{
		{"allow, ids sorted", act(t, "fs.read", "file://workspace/src/a.go", ""), Allow, ReasonAllowByRule, []string{"allow-read", "allow-read-src"}},
		{"principal narrows", newAction(t, "fs.read", "file://workspace/src/a.go", "", bob), Allow, ReasonAllowByRule, []string{"allow-read"}},
		{"deny wins over allow", act(t, "fs.read", "file://workspace/src/.env.local", ""), Deny, ReasonDenyByRule, []string{"deny-env"}},
		{"two denies sorted", act(t, "fs.read", "file://workspace/a/.env.pem", ""), Deny, ReasonDenyByRule, []string{"deny-env", "deny-pem"}},
		{"approval", act(t, "fs.write", "file://workspace/src/a.go", `{"content":"x"}`), RequireApproval, ReasonRequireApprovalByRule, []string{"approve-write"}},
		{"agent and env lists", act(t, "fs.write", "file://workspace/docs/a.md", `{"content":"x"}`), Allow, ReasonAllowByRule, []string{"allow-write-docs"}},
		{"environment excludes", newAction(t, "fs.write", "file://workspace/docs/a.md", `{"content":"x"}`, prod), Deny, ReasonDenyByRule, []string{"deny-writes-prod"}},
		{"risk flag required", newAction(t, "fs.read", "file://workspace/docs/a.md", "", prod), Allow, ReasonAllowByRule, []string{"allow-read"}},
		{"default deny", act(t, "net.http_request", "url://example.com/", ""), Deny, ReasonDenyByDefault, nil},
		{"unknown type", act(t, "payments.refund", "payments://shop/orders/1", ""), Deny, ReasonDenyByDefault, nil},
		{"exec_match", act(t, "process.exec", "file://workspace/repo", `{"argv":["git","status","-s"]}`), Deny, ReasonDenyByExecModelConflict, []string{"git-status", "legacy-ls"}},
		{"legacy only", act(t, "process.exec", "file://workspace/repo", `{"argv":["git","push"]}`), Allow, ReasonAllowByRule, []string{"legacy-ls"}},
		{"legacy allowlists share nothing", act(t, "process.exec", "file://workspace/tmp/x", `{"argv":["rm"]}`), Deny, ReasonDenyByExecModelConflict, []string{"legacy-cat", "legacy-ls"}},
		{"params lte", act(t, "mcp.call", "mcp://retail/refund_order", `{"tool_arguments":{"amount":100}}`), Allow, ReasonAllowByRule, []string{"refund-small"}},
		{"params gt fractional", act(t, "mcp.call", "mcp://retail/refund_order", `{"tool_arguments":{"amount":100.01}}`), RequireApproval, ReasonRequireApprovalByRule, []string{"refund-large"}},
		{"params missing", act(t, "mcp.call", "mcp://retail/refund_order", `{}`), Deny, ReasonDenyByDefault, nil},
		{"params not a number", act(t, "mcp.call", "mcp://retail/refund_order", `{"tool_arguments":{"amount":"lots"}}`), Deny, ReasonDenyByEvaluationError, []string{"refund-large", "refund-small"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Evaluate(tt.a)
			checkDecision(t, d, tt.decision, tt.reason, tt.ids...)
			if d.PolicyBundleHash != e.Hash() {
				t.Errorf("bundle hash %q", d.PolicyBundleHash)
			}
			if d.MatchedRuleIDs == nil {
				t.Error("matched_rule_ids must be [] not null")
			}
		})
	}
}

func TestEvaluateErrors(t *testing.T) {
	e := mustLoad(t, "eval.yaml", evalBundle)
	checkDecision(t, e.Evaluate(nil), Deny, ReasonDenyByEvaluationError)
	broken := &action.Action{ActionType: "mcp.call", Resource: "mcp://retail/refund_order", Params: []byte(`{"tool_arguments":`)}
	checkDecision(t, e.Evaluate(broken), Deny, ReasonDenyByEvaluationError, "refund-large", "refund-small")
	badArgv := &action.Action{ActionType: "process.exec", Resource: "file://workspace/repo", Params: []byte(`{"argv":"git status"}`), RiskFlags: []string{"risk.exec"}}
	checkDecision(t, e.Evaluate(badArgv), Deny, ReasonDenyByEvaluationError, "git-status")
	// An error in a rule whose other conditions fail does not count.
	other := &action.Action{ActionType: "mcp.call", Resource: "mcp://retail/lookup_order", Params: []byte(`{"tool_arguments":`)}
	checkDecision(t, e.Evaluate(other), Deny, ReasonDenyByDefault)
}

// TestEvaluateOrderIndependent shuffles the rules and checks that every
// decision, id list and obligation set stays the same.
func TestEvaluateOrderIndependent(t *testing.T) {
	base := mustLoad(t, "eval.yaml", evalBundle)
	actions := sampleActions(t)
	r := rand.New(rand.NewSource(7))
	for round := 0; round < 20; round++ {
		rules := base.Rules()
		r.Shuffle(len(rules), func(i, j int) { rules[i], rules[j] = rules[j], rules[i] })
		shuffled := engineFromRules(t, rules)
		for _, a := range actions {
			want, got := base.Evaluate(a), shuffled.Evaluate(a)
			if got.Decision != want.Decision || got.ReasonCode != want.ReasonCode || ids(got.MatchedRuleIDs...) != ids(want.MatchedRuleIDs...) {
				t.Fatalf("round %d %s %s: %+v vs %+v", round, a.ActionType, a.Resource, got, want)
			}
		}
	}
}

func engineFromRules(t testing.TB, rules []Rule) *Engine {
	t.Helper()
	b := Bundle{Version: "v1", Rules: rules}
	data, err := action.CanonicalMarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return mustLoad(t, "gen.json", string(data))
}

func sampleActions(t testing.TB) []*action.Action {
	return []*action.Action{
		act(t, "fs.read", "file://workspace/src/a.go", ""),
		act(t, "fs.read", "file://workspace/src/.env.local", ""),
		act(t, "fs.write", "file://workspace/src/a.go", `{"content":"x"}`),
		act(t, "fs.write", "file://workspace/docs/a.md", `{"content":"x"}`),
		act(t, "process.exec", "file://workspace/repo", `{"argv":["git","status","-s"]}`),
		act(t, "process.exec", "file://workspace/tmp/x", `{"argv":["cat","f"]}`),
		act(t, "mcp.call", "mcp://retail/refund_order", `{"tool_arguments":{"amount":100.5}}`),
		act(t, "mcp.call", "mcp://retail/refund_order", `{"tool_arguments":{"amount":"x"}}`),
		act(t, "net.http_request", "url://example.com/a", ""),
	}
}

// TestIndexAgreesWithFullScan compares the indexed evaluator with Explain,
// which checks every rule, over random rules and actions.
func TestIndexAgreesWithFullScan(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for round := 0; round < 30; round++ {
		e := engineFromRules(t, genRules(r, 60))
		for _, a := range genActions(t, r, 40) {
			d := e.Evaluate(a)
			x := e.Explain(a)
			var all []string
			for _, p := range x.MatchedRuleProvenance {
				if d.ReasonCode == ReasonDenyByEvaluationError || classOf(p.Decision) == classOf(d.Decision) {
					all = append(all, p.RuleID)
				}
			}
			if d.ReasonCode == ReasonAllowByRule || d.ReasonCode == ReasonRequireApprovalByRule || d.ReasonCode == ReasonDenyByRule {
				if ids(all...) != ids(d.MatchedRuleIDs...) {
					t.Fatalf("%s %s %s: index %v, full scan %v", a.ActionType, a.Resource, a.Params, d.MatchedRuleIDs, all)
				}
			}
			if d.ReasonCode == ReasonDenyByDefault && len(x.MatchedRuleProvenance) != 0 {
				t.Fatalf("%s %s: default deny but full scan matched %v", a.ActionType, a.Resource, x.MatchedRuleProvenance)
			}
		}
	}
}

func TestEvaluateAllocations(t *testing.T) {
	if raceEnabled || testing.CoverMode() != "" {
		t.Skip("allocation counts differ under the race detector and coverage")
	}
	e := mustLoad(t, "eval.yaml", evalBundle)
	tests := []struct {
		a   *action.Action
		max float64
	}{
		{act(t, "fs.read", "file://workspace/docs/a.md", ""), 0},
		{act(t, "fs.read", "file://workspace/src/.env", ""), 0},
		{act(t, "mcp.call", "mcp://retail/refund_order", `{"tool_arguments":{"amount":"100.5"}}`), 0},
		{act(t, "net.http_request", "url://example.com/", ""), 0},
		{act(t, "process.exec", "file://workspace/repo", `{"argv":["git","push"]}`), 0},
		{act(t, "fs.read", "file://workspace/src/a.go", ""), 0}, // two ids, contiguous
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(200, func() { e.Evaluate(tt.a) }); n > tt.max {
			t.Errorf("%s %s: %.1f allocations, want <= %.0f", tt.a.ActionType, tt.a.Resource, n, tt.max)
		}
	}
}

func TestDecisionSlicesAreCapped(t *testing.T) {
	e := mustLoad(t, "eval.yaml", evalBundle)
	d := e.Evaluate(act(t, "fs.read", "file://workspace/src/a.go", ""))
	_ = append(d.MatchedRuleIDs, "mutated")
	if d2 := e.Evaluate(act(t, "fs.read", "file://workspace/src/a.go", "")); ids(d2.MatchedRuleIDs...) != "allow-read,allow-read-src" {
		t.Fatalf("append through a returned slice changed the engine: %v", d2.MatchedRuleIDs)
	}
}
