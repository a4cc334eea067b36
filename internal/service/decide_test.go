package service

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

func decideBody(id, decision string) []byte {
	return []byte(`{"approval_id":"` + id + `","decision":"` + decision + `"}`)
}

// requestRefund asks for a refund that needs approval, as who.
func requestRefund(t *testing.T, f *fixture, id string, who action.Identity) string {
	t.Helper()
	resp, err := f.svc.Process(context.Background(), body(id, "payments.refund", "payments://shop/1", map[string]any{"amount": 5000}, ""), who)
	if err != nil || resp.Decision != policy.RequireApproval {
		t.Fatalf("request: %+v %v", resp, err)
	}
	return resp.ApprovalID
}

func wantPending(t *testing.T, f *fixture, id string) {
	t.Helper()
	rec, err := f.store.Get(context.Background(), id)
	if err != nil || rec.Status != approvals.Pending {
		t.Fatalf("approval %s: %+v %v, want PENDING", id, rec, err)
	}
}

// TestSelfApprovalRefused is issue 8 #5: the reviewer's own request cannot
// be approved by the reviewer, under any spelling of its id.
func TestSelfApprovalRefused(t *testing.T) {
	f := newFixtureWith(t, true, func(c *Config) { c.Approvers = []string{"reviewer", "Reviewer", "bob"} })
	ctx := context.Background()
	reviewer := action.Identity{Principal: "reviewer", Agent: "bot"}
	id := requestRefund(t, f, "s1", reviewer)
	for _, who := range []string{"reviewer", "Reviewer"} {
		_, err := f.svc.Decide(ctx, decideBody(id, "APPROVE"), who)
		if !isCode(err, CodeApprovalForbidden) || AsError(err).Status != http.StatusForbidden {
			t.Fatalf("%s approved its own request: %v", who, err)
		}
		ev := f.rec.last(audit.EventApprovalDecided)
		if ev == nil || ev.ApprovalID != id || ev.Decision != policy.Deny || ev.Reason != "approval_forbidden: separation_of_duties" || ev.Principal != who {
			t.Fatalf("refusal not audited: %+v", ev)
		}
	}
	wantPending(t, f, id)
	retry, _ := f.svc.Process(ctx, body("s1", "payments.refund", "payments://shop/1", map[string]any{"amount": 5000}, id), reviewer)
	if retry.Decision != policy.RequireApproval {
		t.Fatalf("retry after a refused self-approval: %+v", retry)
	}
	// Another approver may decide it.
	if dec, err := f.svc.Decide(ctx, decideBody(id, "APPROVE"), "bob"); err != nil || dec.Status != approvals.Approved {
		t.Fatalf("bob: %+v %v", dec, err)
	}
}

func TestSelfApprovalAllowedWhenConfigured(t *testing.T) {
	f := newFixtureWith(t, true, func(c *Config) { c.AllowSelfApproval = true })
	id := requestRefund(t, f, "s2", action.Identity{Principal: "reviewer", Agent: "bot"})
	if dec, err := f.svc.Decide(context.Background(), decideBody(id, "APPROVE"), "reviewer"); err != nil || dec.Status != approvals.Approved {
		t.Fatalf("allow_self_approval: %+v %v", dec, err)
	}
}

func TestNotApproverRefusalIsAudited(t *testing.T) {
	f := newFixture(t, true)
	id := requestRefund(t, f, "s3", alice)
	if _, err := f.svc.Decide(context.Background(), decideBody(id, "APPROVE"), "mallory"); !isCode(err, CodeApprovalForbidden) {
		t.Fatalf("mallory: %v", err)
	}
	ev := f.rec.last(audit.EventApprovalDecided)
	if ev == nil || ev.Principal != "mallory" || ev.Reason != "approval_forbidden: not_an_approver" {
		t.Fatalf("refusal not audited: %+v", ev)
	}
	wantPending(t, f, id)
}

// TestUnauditedDecisionDoesNotTakeEffect is issue 8 #8: with the audit
// write failing, the decision is a 500 and the approval stays PENDING, so
// the retry still needs approval.
func TestUnauditedDecisionDoesNotTakeEffect(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	id := requestRefund(t, f, "s4", alice)
	f.rec.failOn = audit.EventApprovalDecided
	_, err := f.svc.Decide(ctx, decideBody(id, "APPROVE"), "reviewer")
	if !isCode(err, CodeAudit) || AsError(err).Status != http.StatusInternalServerError {
		t.Fatalf("decide with audit down: %v", err)
	}
	wantPending(t, f, id)
	retry, _ := f.svc.Process(ctx, body("s4", "payments.refund", "payments://shop/1", map[string]any{"amount": 5000}, id), alice)
	if retry.Decision != policy.RequireApproval {
		t.Fatalf("an unaudited approval took effect: %+v", retry)
	}
	// Once audit works again the same decision goes through, once.
	f.rec.failOn = ""
	if dec, err := f.svc.Decide(ctx, decideBody(id, "APPROVE"), "reviewer"); err != nil || dec.Status != approvals.Approved {
		t.Fatalf("decide after recovery: %+v %v", dec, err)
	}
	if got := f.rec.last(audit.EventApprovalDecided); got == nil || got.Decision != approvals.Approved {
		t.Fatalf("approval.decided: %+v", got)
	}
}

// TestDeciderEveryDoor: the CLI's decider (no HTTP, no approver list)
// enforces separation of duties too, and audits before the store changes.
func TestDeciderEveryDoor(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	id := requestRefund(t, f, "s5", alice)
	d := &Decider{Store: f.store, Audit: f.rec, Environment: "dev", Clock: func() time.Time { return f.now }}
	if _, err := d.Decide(ctx, id, approvals.Approved, "ALICE", map[string]any{"decided_via": "cli"}); !isCode(err, CodeApprovalForbidden) {
		t.Fatalf("cli self-approval: %v", err)
	}
	f.rec.failOn = audit.EventApprovalDecided
	if _, err := d.Decide(ctx, id, approvals.Approved, "ops", nil); !isCode(err, CodeAudit) {
		t.Fatalf("cli with audit down: %v", err)
	}
	wantPending(t, f, id)
	f.rec.failOn = ""
	rec, err := d.Decide(ctx, id, approvals.Approved, "ops", map[string]any{"decided_via": "cli"})
	if err != nil || rec.Status != approvals.Approved || rec.DecidedBy != "ops" {
		t.Fatalf("cli: %+v %v", rec, err)
	}
	if ev := f.rec.last(audit.EventApprovalDecided); ev.ExecutorMetadata["decided_via"] != "cli" {
		t.Fatalf("event %+v", ev)
	}
}
