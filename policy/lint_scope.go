package policy

import (
	"fmt"
	"strings"

	"github.com/caddy-nomos/nomos/policy/action"
)

// LintClassScopeOnAmount warns about approval_scope_class on a rule that
// matches amount-like params: one approval would then cover every amount.
const LintClassScopeOnAmount = "class_scope_on_amount"

// LintClassScopeOnEffect warns about approval_scope_class on a rule whose
// action's params are the effect itself: the content an fs.write writes,
// the command process.exec runs, the request net.http_request sends, the
// arguments of an MCP tool or a custom action. One approval would then
// cover any content, command, request or arguments on that resource.
const LintClassScopeOnEffect = "class_scope_on_effect"

// amountWords are the last path segments that name a quantity of money or
// goods. A numeric bound (lt, lte, gt, gte) on any param counts too.
var amountWords = []string{
	"amount", "amount_cents", "cost", "credit", "fee", "price", "qty", "quantity",
	"refund", "sum", "total", "value",
}

// classScopeFinding flags a rule whose approvals would be scoped to a class
// (action type and resource, any params) although the rule decides on an
// amount: approving one refund of 101 would approve a refund of 10,000.
func classScopeFinding(c *compiledRule) []Finding {
	if c.ob.ApprovalScopeClass == "" {
		return nil
	}
	for i := range c.params {
		if p := &c.params[i]; len(p.m.bounds) > 0 || isAmountPath(p.path) {
			return []Finding{warn(c.id, LintClassScopeOnAmount, fmt.Sprintf(
				"rule %q scopes approvals to a class (approval_scope_class: %s) but matches the amount-like param %q: one approval would cover any amount; drop approval_scope_class to bind each approval to the exact action",
				c.id, c.ob.ApprovalScopeClass, p.path))}
		}
	}
	if c.rule.ActionType == action.TypeFSRead {
		return nil // a read's params do not change what it does
	}
	return []Finding{warn(c.id, LintClassScopeOnEffect, fmt.Sprintf(
		"rule %q scopes approvals to a class (approval_scope_class: %s): one approval of %s on a resource would cover any params, so whatever content, command, request or arguments come next; drop approval_scope_class to bind each approval to the exact action, or keep it only where that is intended",
		c.id, c.ob.ApprovalScopeClass, c.rule.ActionType))}
}

func isAmountPath(path string) bool {
	last := strings.ToLower(path[strings.LastIndexByte(path, '.')+1:])
	for _, w := range amountWords {
		if last == w || strings.HasSuffix(last, "_"+w) {
			return true
		}
	}
	return false
}
