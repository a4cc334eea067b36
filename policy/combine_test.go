package policy

import (
	"slices"
	"testing"
)

func TestStricter(t *testing.T) {
	e := loadExamples(t, "coding-agent.yaml")
	ten, five := int64(10), int64(5)
	allowA := Decision{Decision: Allow, ReasonCode: ReasonAllowByRule, MatchedRuleIDs: []string{"b"}, Obligations: Obligations{OutputMaxBytes: &ten, Redact: []string{"x"}}}
	allowB := Decision{Decision: Allow, ReasonCode: ReasonAllowByRule, MatchedRuleIDs: []string{"a"}, Obligations: Obligations{OutputMaxBytes: &five, Redact: []string{"y"}}}
	deny := Decision{Decision: Deny, ReasonCode: ReasonDenyByRule, MatchedRuleIDs: []string{"d"}}
	approval := Decision{Decision: RequireApproval, ReasonCode: ReasonRequireApprovalByRule}
	if got := e.Stricter(allowA, deny); got.Decision != Deny || got.MatchedRuleIDs[0] != "d" {
		t.Fatalf("allow+deny: %+v", got)
	}
	if got := e.Stricter(deny, approval); got.Decision != Deny {
		t.Fatalf("deny+approval: %+v", got)
	}
	if got := e.Stricter(allowA, approval); got.Decision != RequireApproval {
		t.Fatalf("allow+approval: %+v", got)
	}
	got := e.Stricter(allowA, allowB)
	if got.Decision != Allow || *got.Obligations.OutputMaxBytes != 5 || !slices.Equal(got.Obligations.Redact, []string{"x", "y"}) ||
		!slices.Equal(got.MatchedRuleIDs, []string{"a", "b"}) {
		t.Fatalf("allow+allow: %+v", got)
	}
	if *allowA.Obligations.OutputMaxBytes != 10 || len(allowA.Obligations.Redact) != 1 {
		t.Fatal("Stricter changed its input")
	}
}
