package policy

import (
	"fmt"
	"strings"
)

// LintClassScopeOnAmount warns about approval_scope_class on a rule that
// matches amount-like params: one approval would then cover every amount.
const LintClassScopeOnAmount = "class_scope_on_amount"

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
