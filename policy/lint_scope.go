package policy

import (
	"fmt"
	"slices"
	"strings"
)

// LintClassScopeOnAmount warns about approval_scope_class on a rule that
// matches amount-like params: one approval would then cover every amount.
const LintClassScopeOnAmount = "class_scope_on_amount"

// LintClassScopeOnContent warns about approval_scope_class on a rule for
// an action whose params are what it does (the content written, the patch,
// the argv run): the reviewer approves one content and the agent may then
// send another under the same approval.
const LintClassScopeOnContent = "class_scope_on_content"

// contentActionTypes are the action types whose params are the effect.
var contentActionTypes = []string{"*", "fs.write", "process.exec", "repo.apply_patch"}

// amountWords are the last path segments that name a quantity of money or
// goods. A numeric bound (lt, lte, gt, gte) on any param counts too.
var amountWords = []string{
	"amount", "amount_cents", "cost", "credit", "fee", "price", "qty", "quantity",
	"refund", "sum", "total", "value",
}

// classScopeFinding flags a rule whose approvals would be scoped to a class
// (action type and resource, any params) although the rule decides on an
// amount (approving one refund of 101 would approve a refund of 10,000) or
// on content (approving a harmless CI workflow would approve any workflow
// written to that file).
func classScopeFinding(c *compiledRule) []Finding {
	if c.ob.ApprovalScopeClass == "" {
		return nil
	}
	if slices.Contains(contentActionTypes, c.rule.ActionType) {
		return []Finding{warn(c.id, LintClassScopeOnContent, fmt.Sprintf(
			"rule %q scopes approvals to a class (approval_scope_class: %s) for %s, whose params are what it does: the reviewer approves one content and any other may follow under the same approval; drop approval_scope_class to bind each approval to the exact action",
			c.id, c.ob.ApprovalScopeClass, c.rule.ActionType))}
	}
	for i := range c.params {
		if p := &c.params[i]; len(p.m.bounds) > 0 || isAmountPath(p.path) {
			return []Finding{warn(c.id, LintClassScopeOnAmount, fmt.Sprintf(
				"rule %q scopes approvals to a class (approval_scope_class: %s) but matches the amount-like param %q: one approval would cover any amount; drop approval_scope_class to bind each approval to the exact action",
				c.id, c.ob.ApprovalScopeClass, p.path))}
		}
	}
	return nil
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
