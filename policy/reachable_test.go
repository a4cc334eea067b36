package policy

import (
	"encoding/json"
	"testing"

	"github.com/caddy-nomos/nomos/policy/action"
)

func TestReachable(t *testing.T) {
	const bundle = `version: v1
rules:
  - id: lookup
    action_type: mcp.call
    resource: mcp://retail/lookup_order
    decision: ALLOW
  - id: refund-small
    action_type: mcp.call
    resource: mcp://retail/refund_order
    decision: ALLOW
    params_match:
      tool_arguments.amount: {lte: 100}
  - id: support-only
    action_type: mcp.call
    resource: mcp://retail/customer_notes
    decision: ALLOW
    principals: [support]
  - id: deny-comp
    action_type: mcp.call
    resource: mcp://retail/issue_compensation
    decision: DENY
  - id: allow-all-retail
    action_type: mcp.call
    resource: mcp://retail/*
    decision: REQUIRE_APPROVAL
    principals: [manager]
  - id: deny-big-export
    action_type: mcp.call
    resource: mcp://retail/export
    decision: DENY
    params_match:
      tool_arguments.rows: {gt: 1000}
`
	e, err := Load([]BundleSource{{Path: "r.yaml", Data: []byte(bundle)}}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		principal, tool string
		want            bool
	}{
		{"alice", "lookup_order", true},
		{"alice", "refund_order", true},          // params decide later
		{"alice", "customer_notes", false},       // principal excluded
		{"support", "customer_notes", true},      //
		{"alice", "issue_compensation", false},   // unconditional deny
		{"manager", "issue_compensation", false}, // deny wins over approval
		{"manager", "export", true},              // conditional deny: small exports may pass
		{"alice", "export", false},               // no rule for alice
		{"alice", "unknown_tool", false},         // deny by default
	}
	for _, c := range cases {
		a := &action.Action{ActionType: "mcp.call", Resource: "mcp://retail/" + c.tool, Principal: c.principal,
			Agent: "bot", Environment: "dev", Params: json.RawMessage(`{}`)}
		if got := e.Reachable(a); got != c.want {
			t.Errorf("%s calling %s: Reachable = %v, want %v", c.principal, c.tool, got, c.want)
		}
	}
	if e.Reachable(nil) {
		t.Error("nil action reachable")
	}
}
