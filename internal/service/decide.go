package service

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/policy"
)

// ReasonSelfApproval is the reason an approval decision by the principal
// who requested the action is refused.
const ReasonSelfApproval = "separation_of_duties"

// Decider records reviewers' decisions on approvals. It is the one place an
// approval is decided, for POST /approvals/decide and the `nomos approvals`
// CLI alike, so every door enforces the same rules:
//
//   - separation of duties: the principal who requested the action cannot
//     decide its approval, unless AllowSelfApproval;
//   - audit first: approval.decided is recorded before the store changes,
//     so a decision that cannot be audited never takes effect.
type Decider struct {
	Store approvals.Store
	// Audit records the decision before it takes effect. Nil means the
	// caller has no audit log (the CLI on a bare store), and decisions are
	// not audited.
	Audit       Recorder
	Environment string
	// AllowSelfApproval lets a principal decide the approval of its own
	// request. Default: false.
	AllowSelfApproval bool
	Clock             func() time.Time
	Logger            *slog.Logger
}

// Decide records approver's decision (approvals.Approved or Denied) on the
// approval id. meta is added to the audit event (such as decided_via).
func (d *Decider) Decide(ctx context.Context, id, status, approver string, meta map[string]any) (approvals.Record, error) {
	rec, err := d.Store.Get(ctx, id)
	if err != nil {
		return approvals.Record{}, decideError(err)
	}
	if !d.AllowSelfApproval && SamePrincipal(rec.Principal, approver) {
		return approvals.Record{}, d.refuse(ctx, rec, approver, meta, ReasonSelfApproval,
			"the principal that requested the action cannot decide its approval")
	}
	if err := d.precheck(rec, status); err != nil {
		return approvals.Record{}, err
	}
	if err := d.audit(ctx, d.event(rec, status, approver, meta)); err != nil {
		return approvals.Record{}, err
	}
	out, err := d.Store.Decide(ctx, id, status, approver, d.now())
	if err != nil {
		d.notApplied(ctx, rec, status, approver, meta, err)
		return approvals.Record{}, decideError(err)
	}
	return out, nil
}

// precheck refuses, before anything is audited, a decision the store would
// refuse: the opposite of a recorded decision, or a pending approval that
// has expired. The store checks again atomically.
func (d *Decider) precheck(rec approvals.Record, status string) error {
	switch {
	case rec.Status != approvals.Pending && rec.Status != status:
		return decideError(approvals.ErrConflict)
	case rec.Status == approvals.Pending && rec.Expired(d.now()):
		return decideError(approvals.ErrExpired)
	}
	return nil
}

// SamePrincipal reports whether two principal ids name the same principal.
// Ids are compared without regard to letter case, so "Reviewer" cannot
// approve what "reviewer" requested.
func SamePrincipal(a, b string) bool {
	return strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b))
}

// refuse audits a refused decision and returns the 403. The approval is
// unchanged. If even the refusal cannot be audited, the caller gets the
// audit error; the approval is unchanged either way.
func (d *Decider) refuse(ctx context.Context, rec approvals.Record, approver string, meta map[string]any, code, msg string) error {
	ev := DecidedEvent(rec, approver, d.Environment)
	ev.Decision = policy.Deny
	ev.Reason = CodeApprovalForbidden + ": " + code
	ev.ResultClassification = audit.ResultDeniedPolicy
	addMeta(ev, meta)
	if err := d.audit(ctx, ev); err != nil {
		return err
	}
	return Errorf(http.StatusForbidden, CodeApprovalForbidden, "%s", msg)
}

// notApplied records that an audited decision did not take effect (the
// store refused it or failed), so the log does not claim more than happened.
func (d *Decider) notApplied(ctx context.Context, rec approvals.Record, status, approver string, meta map[string]any, cause error) {
	d.logger().Error("approvals: audited decision not applied", "approval_id", rec.ID, "error", cause)
	ev := d.event(rec, status, approver, meta)
	ev.Reason = "approval_not_applied"
	ev.ResultClassification = audit.ResultExecutionError
	_ = d.audit(ctx, ev)
}

// event is approval.decided for the decision about to be stored.
func (d *Decider) event(rec approvals.Record, status, approver string, meta map[string]any) *audit.Event {
	rec.Status, rec.DecidedBy = status, approver
	ev := DecidedEvent(rec, approver, d.Environment)
	addMeta(ev, meta)
	return ev
}

func addMeta(ev *audit.Event, meta map[string]any) {
	for k, v := range meta {
		ev.ExecutorMetadata[k] = v
	}
}

func (d *Decider) audit(ctx context.Context, ev *audit.Event) error {
	if d.Audit == nil {
		return nil
	}
	if err := d.Audit.Record(ctx, ev); err != nil {
		d.logger().Error("audit: approval decision not recorded; the approval is unchanged", "approval_id", ev.ApprovalID, "error", err)
		return Errorf(http.StatusInternalServerError, CodeAudit, "could not record the approval decision; the approval is unchanged")
	}
	return nil
}

func (d *Decider) now() time.Time {
	if d.Clock == nil {
		return time.Now()
	}
	return d.Clock()
}

func (d *Decider) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}
