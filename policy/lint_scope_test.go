package policy

import "testing"

// TestLintClassScopeOnAmount is issue 8 #4: a class-scoped approval on a
// rule that decides on an amount is flagged; the same rule bound to the
// exact action, or a class scope with no amount, is not.
func TestLintClassScopeOnAmount(t *testing.T) {
	tests := []struct{ name, rules, want string }{
		{"class scope on a numeric bound", `
  - {id: big, action_type: mcp.call, resource: 'mcp://retail/refund_order', decision: REQUIRE_APPROVAL, params_match: {tool_arguments.amount: {gt: 100}}, obligations: {approval_scope_class: action_type_resource}}`,
			"warning:class_scope_on_amount:big"},
		{"class scope on an amount-like name", `
  - {id: priced, action_type: payments.charge, resource: 'payments://shop/*', decision: REQUIRE_APPROVAL, params_match: {total_price: {present: true}}, obligations: {approval_scope_class: action_type_resource}}`,
			"warning:class_scope_on_amount:priced"},
		{"exact binding", `
  - {id: big, action_type: mcp.call, resource: 'mcp://retail/refund_order', decision: REQUIRE_APPROVAL, params_match: {tool_arguments.amount: {gt: 100}}}`, ""},
		{"class scope on a write", `
  - {id: ci, action_type: fs.write, resource: 'file://workspace/.github/**', decision: REQUIRE_APPROVAL, params_match: {mode: {equals: replace}}, obligations: {approval_scope_class: action_type_resource}}`,
			"warning:class_scope_on_effect:ci"},
		{"class scope on a custom action without params_match", `
  - {id: refunds, action_type: payments.refund, resource: 'payments://shop/**', decision: REQUIRE_APPROVAL, obligations: {approval_scope_class: action_type_resource}}`,
			"warning:class_scope_on_effect:refunds"},
		{"class scope on a read", `
  - {id: logs, action_type: fs.read, resource: 'file://workspace/logs/**', decision: REQUIRE_APPROVAL, obligations: {approval_scope_class: action_type_resource}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := findingKeys(lintOf(t, "", "version: v1\nrules:"+tt.rules)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
