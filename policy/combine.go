package policy

import "slices"

// Stricter combines two decisions on one effect, such as an action decided
// on the path it names and again on the path that path resolves to: the
// more restrictive decision wins (DENY > REQUIRE_APPROVAL > ALLOW). When
// both are of the same kind, their matched rules are joined and their
// obligations merge as those of two matching rules do (the smaller cap, the
// union of redaction patterns, the stronger sandbox), so neither side's
// constraints are lost.
func (e *Engine) Stricter(a, b Decision) Decision {
	ra, rb := decisionRank(a.Decision), decisionRank(b.Decision)
	switch {
	case rb > ra:
		return b
	case ra > rb || a.Decision == Deny:
		return a
	}
	out := a
	out.MatchedRuleIDs = unionSorted(sortedCopy(a.MatchedRuleIDs), sortedCopy(b.MatchedRuleIDs))
	e.mergeInto(&out.Obligations, &b.Obligations)
	return out
}

func decisionRank(d string) int {
	switch d {
	case Allow:
		return 0
	case RequireApproval:
		return 1
	}
	return 2
}

func sortedCopy(s []string) []string {
	return slices.Sorted(slices.Values(s))
}
