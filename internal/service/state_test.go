package service

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/policy"
)

// downStore is an approval store whose shared state cannot be reached.
type downStore struct{ approvals.Store }

var errDown = fmt.Errorf("approvals: redis get: %w: dial tcp: connection refused", sharedstate.ErrUnavailable)

func (downStore) CreateOrGetPending(context.Context, approvals.Request, time.Duration, time.Time) (approvals.Record, bool, error) {
	return approvals.Record{}, false, errDown
}
func (downStore) Get(context.Context, string) (approvals.Record, error) {
	return approvals.Record{}, errDown
}
func (downStore) Use(context.Context, string, string, string, string, string, time.Time) (approvals.Record, error) {
	return approvals.Record{}, errDown
}
func (downStore) Decide(context.Context, string, string, string, time.Time) (approvals.Record, error) {
	return approvals.Record{}, errDown
}

// downIndex is a report index that cannot answer.
type downIndex struct{}

func (downIndex) Add(context.Context, string, string, string, time.Time) error { return errDown }
func (downIndex) Reportable(context.Context, string, string, string, time.Time) (bool, error) {
	return false, errDown
}

// With the shared state down, every decision that needs it is an audited
// DENY state_unavailable, and what is not a decision is a 503; nothing is
// decided on local state.
func TestSharedStateDownFailsClosed(t *testing.T) {
	f := newFixtureWith(t, false, func(c *Config) { c.Approvals, c.Authorized = downStore{}, downIndex{} })
	ctx := context.Background()
	refund := map[string]any{"amount": 500}
	for _, approval := range []string{"", "apr_presented"} {
		d, err := f.svc.Process(ctx, body("r1", "payments.refund", "payments://shop/9", refund, approval), alice)
		if err != nil || d.Decision != policy.Deny || d.Reason != ReasonStateUnavailable || d.ApprovalID != "" {
			t.Fatalf("approval %q with the store down: %+v %v", approval, d, err)
		}
		if ev := f.rec.last(audit.EventActionDecision); ev == nil || ev.Decision != policy.Deny || ev.Reason != ReasonStateUnavailable {
			t.Fatalf("decision not audited: %+v", ev)
		}
		if ev := f.rec.last(audit.EventActionCompleted); ev == nil || ev.ResultClassification != audit.ResultStateUnavailable || !ev.Retryable {
			t.Fatalf("outcome not audited as STATE_UNAVAILABLE: %+v", ev)
		}
	}
	// An allowed custom action cannot be entered in the report index: it
	// is denied, not authorized unreportable.
	d, err := f.svc.Process(ctx, body("a1", "orders.read", "shop://orders/1", nil, ""), alice)
	if err != nil || d.Decision != policy.Deny || d.Reason != ReasonStateUnavailable || d.ExecutionMode != "" {
		t.Fatalf("custom action with the index down: %+v %v", d, err)
	}
	if _, err := f.svc.Report(ctx, []byte(`{"action_id":"a1","trace_id":"t-a1","outcome":"SUCCEEDED"}`), alice); !isCode(err, CodeStateUnavailable) {
		t.Fatalf("report with the index down: %v", err)
	}
	if _, err := f.svc.Decide(ctx, []byte(`{"approval_id":"apr_x","decision":"APPROVE"}`), "reviewer"); !isCode(err, CodeStateUnavailable) {
		t.Fatalf("decide with the store down: %v", err)
	}
}
