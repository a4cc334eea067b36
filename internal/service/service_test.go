package service

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/internal/executor"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

const testBundle = `version: v1
rules:
  - id: read-orders
    action_type: orders.read
    resource: "shop://orders/**"
    decision: ALLOW
  - id: refund-large
    action_type: payments.refund
    resource: "payments://shop/**"
    decision: REQUIRE_APPROVAL
    params_match:
      amount: {gt: 100}
  - id: refund-class
    action_type: payments.void
    resource: "payments://shop/**"
    decision: REQUIRE_APPROVAL
    obligations:
      approval_scope_class: action_type_resource
  - id: deny-comp
    action_type: payments.compensate
    resource: "**"
    decision: DENY
  - id: read-ws
    action_type: fs.read
    resource: "file://workspace/**"
    decision: ALLOW
  - id: patch
    action_type: repo.apply_patch
    resource: "repo://local/workspace"
    decision: ALLOW
  - id: write-src
    action_type: fs.write
    resource: "file://workspace/src/**"
    decision: ALLOW
  - id: write-ci
    action_type: fs.write
    resource: "file://workspace/.github/**"
    decision: REQUIRE_APPROVAL
`

// recorder keeps events in memory and fails when told to.
type recorder struct {
	mu     sync.Mutex
	events []*audit.Event
	failOn string
}

func (r *recorder) Record(ctx context.Context, e *audit.Event) error {
	return r.RecordAll(ctx, e)
}

// RecordAll stores all events or, like one failed commit, none of them.
func (r *recorder) RecordAll(_ context.Context, events ...*audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range events {
		if r.failOn == e.EventType {
			return errors.New("disk full")
		}
	}
	r.events = append(r.events, events...)
	return nil
}

func (r *recorder) types(actionID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.ActionID == actionID {
			out = append(out, e.EventType)
		}
	}
	return out
}

func (r *recorder) last(typ string) *audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].EventType == typ {
			return r.events[i]
		}
	}
	return nil
}

// fakeExec records what it was asked to run.
type fakeExec struct {
	calls []string
	err   error
}

func (f *fakeExec) Targets(*action.Action) ([]executor.Target, error) { return nil, nil }

func (f *fakeExec) Execute(_ context.Context, a *action.Action, _ policy.Decision, _ []executor.Target) (*executor.Result, error) {
	f.calls = append(f.calls, a.ActionType+" "+a.Resource)
	if f.err != nil {
		return nil, f.err
	}
	return &executor.Result{Output: "ok", Classification: audit.ResultSuccess}, nil
}

type fixture struct {
	svc   *Service
	rec   *recorder
	exec  *fakeExec
	store approvals.Store
	now   time.Time
}

func newFixture(t *testing.T, withApprovals bool) *fixture {
	t.Helper()
	return newFixtureWith(t, withApprovals, nil)
}

// newFixtureWith is newFixture with the config changed by mod before New.
func newFixtureWith(t *testing.T, withApprovals bool, mod func(*Config)) *fixture {
	t.Helper()
	eng, err := policy.Load([]policy.BundleSource{{Path: "test.yaml", Data: []byte(testBundle)}}, policy.LoadOptions{Environment: "dev"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{rec: &recorder{}, exec: &fakeExec{}, now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
	cfg := Config{Environment: "dev", Policy: eng, Audit: f.rec, Executor: f.exec,
		Approvers: []string{"reviewer"}, Clock: func() time.Time { return f.now }}
	if withApprovals {
		st, err := approvals.OpenSQLite(filepath.Join(t.TempDir(), "approvals.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		cfg.Approvals, f.store = st, st
	}
	if mod != nil {
		mod(&cfg)
	}
	if f.svc, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	return f
}

var alice = action.Identity{Principal: "alice", Agent: "bot"}

func body(id, typ, resource string, params map[string]any, approvalID string) []byte {
	ctx := map[string]any{}
	if approvalID != "" {
		ctx["extensions"] = map[string]any{"approval": map[string]any{"approval_id": approvalID}}
	}
	if params == nil {
		params = map[string]any{}
	}
	b, _ := json.Marshal(map[string]any{"schema_version": "v1", "action_id": id, "trace_id": "t-" + id,
		"action_type": typ, "resource": resource, "params": params, "context": ctx})
	return b
}

func TestProcessDecisions(t *testing.T) {
	f := newFixture(t, true)
	cases := []struct {
		id, typ, res     string
		params           map[string]any
		decision, reason string
		mode             string
	}{
		{"a1", "orders.read", "shop://orders/1", nil, policy.Allow, "allow_by_rule", ModeExternalAuthorized},
		{"a2", "payments.compensate", "payments://shop/1", nil, policy.Deny, "deny_by_rule", ""},
		{"a3", "crm.export", "crm://all", nil, policy.Deny, "deny_by_default", ""},
		{"a4", "payments.refund", "payments://shop/1", map[string]any{"amount": 500}, policy.RequireApproval, "require_approval_by_rule", ""},
		{"a5", "fs.read", "file://workspace/README.md", nil, policy.Allow, "allow_by_rule", ModeExecuted},
	}
	for _, c := range cases {
		t.Run(c.id, func(t *testing.T) {
			resp, err := f.svc.Process(context.Background(), body(c.id, c.typ, c.res, c.params, ""), alice)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Decision != c.decision || resp.Reason != c.reason || resp.ExecutionMode != c.mode {
				t.Fatalf("got %+v", resp)
			}
			want := []string{audit.EventTraceStart, audit.EventActionDecision, audit.EventActionCompleted, audit.EventTraceEnd}
			if c.decision == policy.RequireApproval {
				want = []string{audit.EventTraceStart, audit.EventActionDecision, audit.EventApprovalRequested, audit.EventActionCompleted, audit.EventTraceEnd}
			}
			if got := f.rec.types(c.id); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("audit events %v, want %v", got, want)
			}
			ev := f.rec.last(audit.EventActionCompleted)
			if ev.Environment != "dev" || ev.Principal != "alice" || ev.ActionFingerprint == "" || ev.PolicyBundleHash == "" {
				t.Fatalf("completed event lacks identity or hashes: %+v", ev)
			}
		})
	}
	if len(f.exec.calls) != 1 {
		t.Fatalf("executor calls %v, want only the allowed fs.read", f.exec.calls)
	}
}

// TestDecisionAuditFailureDenies: when the decision event cannot be
// stored, nothing executes and the caller gets 500 audit_error.
func TestDecisionAuditFailureDenies(t *testing.T) {
	f := newFixture(t, false)
	f.rec.failOn = audit.EventActionDecision
	_, err := f.svc.Process(context.Background(), body("x1", "fs.read", "file://workspace/a", nil, ""), alice)
	var se *Error
	if !errors.As(err, &se) || se.Status != http.StatusInternalServerError || se.Code != CodeAudit {
		t.Fatalf("got %v", err)
	}
	if len(f.exec.calls) != 0 {
		t.Fatalf("executed despite unrecorded decision: %v", f.exec.calls)
	}
}

func TestApprovalFlow(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	refund := map[string]any{"amount": 500}
	first, err := f.svc.Process(ctx, body("r1", "payments.refund", "payments://shop/9", refund, ""), alice)
	if err != nil || first.Decision != policy.RequireApproval || first.ApprovalID == "" {
		t.Fatalf("first: %+v %v", first, err)
	}
	// Not yet approved: retrying with the id still needs approval, same id.
	pending, _ := f.svc.Process(ctx, body("r1", "payments.refund", "payments://shop/9", refund, first.ApprovalID), alice)
	if pending.Decision != policy.RequireApproval || pending.ApprovalID != first.ApprovalID {
		t.Fatalf("pending retry: %+v", pending)
	}
	if _, err := f.svc.Decide(ctx, []byte(`{"approval_id":"`+first.ApprovalID+`","decision":"APPROVE"}`), "alice"); !isCode(err, CodeApprovalForbidden) {
		t.Fatalf("self-approval: %v", err)
	}
	dec, err := f.svc.Decide(ctx, []byte(`{"approval_id":"`+first.ApprovalID+`","decision":"approve"}`), "reviewer")
	if err != nil || dec.Status != approvals.Approved {
		t.Fatalf("decide: %+v %v", dec, err)
	}
	// Another identity cannot use it.
	bob := action.Identity{Principal: "bob", Agent: "bot"}
	other, _ := f.svc.Process(ctx, body("r1", "payments.refund", "payments://shop/9", refund, first.ApprovalID), bob)
	if other.Decision != policy.RequireApproval || other.ApprovalID == first.ApprovalID {
		t.Fatalf("another principal used alice's approval: %+v", other)
	}
	ok, _ := f.svc.Process(ctx, body("r1", "payments.refund", "payments://shop/9", refund, first.ApprovalID), alice)
	if ok.Decision != policy.Allow || ok.Reason != ReasonAllowByApproval {
		t.Fatalf("approved retry: %+v", ok)
	}
	changed, _ := f.svc.Process(ctx, body("r2", "payments.refund", "payments://shop/9", map[string]any{"amount": 501}, first.ApprovalID), alice)
	if changed.Decision != policy.RequireApproval || changed.ApprovalID == first.ApprovalID {
		t.Fatalf("changed params reused the approval: %+v", changed)
	}
	if got := f.rec.types("r1"); !contains(got, audit.EventApprovalApplied) || !contains(got, audit.EventApprovalDecided) {
		t.Fatalf("approval events missing: %v", got)
	}
}

func TestDeniedApprovalDenies(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	b := body("d1", "payments.void", "payments://shop/3", nil, "")
	first, _ := f.svc.Process(ctx, b, alice)
	if _, err := f.svc.Decide(ctx, []byte(`{"approval_id":"`+first.ApprovalID+`","decision":"DENY"}`), "reviewer"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Decide(ctx, []byte(`{"approval_id":"`+first.ApprovalID+`","decision":"APPROVE"}`), "reviewer"); !isCode(err, CodeApproval) || AsError(err).Status != http.StatusConflict {
		t.Fatalf("conflicting decision: %v", err)
	}
	resp, _ := f.svc.Process(ctx, body("d1", "payments.void", "payments://shop/3", nil, first.ApprovalID), alice)
	if resp.Decision != policy.Deny || resp.Reason != ReasonApprovalDenied {
		t.Fatalf("retry after denial: %+v", resp)
	}
}

func TestDecideErrors(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	cases := map[string]struct {
		body   string
		status int
	}{
		"unknown id":      {`{"approval_id":"apr_000000000000000000000000","decision":"APPROVE"}`, 404},
		"bad decision":    {`{"approval_id":"apr_000000000000000000000000","decision":"MAYBE"}`, 400},
		"missing id":      {`{"decision":"APPROVE"}`, 400},
		"unknown field":   {`{"approval_id":"x","decision":"APPROVE","by":"me"}`, 400},
		"duplicate field": {`{"approval_id":"x","approval_id":"y","decision":"APPROVE"}`, 400},
		"trailing data":   {`{"approval_id":"x","decision":"APPROVE"} {}`, 400},
		"not an object":   {`[]`, 400},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := f.svc.Decide(ctx, []byte(c.body), "reviewer")
			if AsError(err).Status != c.status {
				t.Fatalf("got %v, want status %d", err, c.status)
			}
		})
	}
	expired := newFixture(t, true)
	first, _ := expired.svc.Process(ctx, body("e1", "payments.void", "payments://shop/1", nil, ""), alice)
	expired.now = expired.now.Add(time.Hour)
	if _, err := expired.svc.Decide(ctx, []byte(`{"approval_id":"`+first.ApprovalID+`","decision":"APPROVE"}`), "reviewer"); AsError(err).Status != 400 {
		t.Fatalf("expired approval: %v", err)
	}
}

func TestApprovalsDisabled(t *testing.T) {
	f := newFixture(t, false)
	resp, err := f.svc.Process(context.Background(), body("n1", "payments.void", "payments://shop/1", nil, ""), alice)
	if err != nil || resp.Decision != policy.Deny || resp.Reason != ReasonApprovalsNotEnabled {
		t.Fatalf("got %+v %v", resp, err)
	}
	if _, err := f.svc.Decide(context.Background(), []byte(`{"approval_id":"x","decision":"APPROVE"}`), "reviewer"); !isCode(err, CodeNotEnabled) {
		t.Fatalf("decide without approvals: %v", err)
	}
}

// TestPatchPathsArePolicyChecked: every file a patch touches is decided as
// its own fs.write, and the strictest outcome wins.
func TestPatchPathsArePolicyChecked(t *testing.T) {
	f := newFixture(t, true)
	patch := func(paths ...string) map[string]any {
		var b strings.Builder
		for _, p := range paths {
			b.WriteString("--- a/" + p + "\n+++ b/" + p + "\n@@ -1 +1 @@\n-old\n+new\n")
		}
		return map[string]any{"patch": b.String()}
	}
	cases := []struct {
		name     string
		params   map[string]any
		decision string
	}{
		{"src only", patch("src/a.go", "src/b.go"), policy.Allow},
		{"touches ci", patch("src/a.go", ".github/ci.yml"), policy.RequireApproval},
		{"touches undeclared path", patch("src/a.go", "docs/x.md"), policy.Deny},
		{"whole-file form", map[string]any{"path": "src/c.go", "content": "x"}, policy.Allow},
		{"whole-file traversal", map[string]any{"path": "../etc/passwd", "content": "x"}, policy.Deny},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := f.svc.Process(context.Background(), body("p"+string(rune('a'+i)), "repo.apply_patch", "repo://local/workspace", c.params, ""), alice)
			if err != nil || resp.Decision != c.decision {
				t.Fatalf("got %+v %v, want %s", resp, err, c.decision)
			}
		})
	}
}

func TestExecutorRefusalIsDeny(t *testing.T) {
	f := newFixture(t, false)
	f.exec.err = &executor.Error{Code: "sandbox_violation", Classification: audit.ResultSandboxViolation, Message: "path escape detected"}
	resp, err := f.svc.Process(context.Background(), body("s1", "fs.read", "file://workspace/link", nil, ""), alice)
	if err != nil || resp.Decision != policy.Deny || resp.Reason != "sandbox_violation: path escape detected" {
		t.Fatalf("got %+v %v", resp, err)
	}
	if ev := f.rec.last(audit.EventActionCompleted); ev.ResultClassification != audit.ResultSandboxViolation {
		t.Fatalf("classification %q", ev.ResultClassification)
	}
}

func TestRejectedRequestsAreAudited(t *testing.T) {
	f := newFixture(t, false)
	_, err := f.svc.Process(context.Background(), []byte(`{"schema_version":"v1"`), alice)
	if !isCode(err, CodeValidation) {
		t.Fatalf("truncated body: %v", err)
	}
	_, err = f.svc.Process(context.Background(), body("v1", "fs.read", "file://workspace/%2e%2e/x", nil, ""), alice)
	if !isCode(err, CodeValidation) {
		t.Fatalf("traversal: %v", err)
	}
	ev := f.rec.last(audit.EventActionDecision)
	if ev == nil || ev.ResultClassification != audit.ResultNormalizationError || ev.ActionID != "v1" || ev.Decision != policy.Deny {
		t.Fatalf("normalization failure not audited: %+v", ev)
	}
}

func TestExplainHasNoSideEffects(t *testing.T) {
	f := newFixture(t, true)
	ex, err := f.svc.Explain(context.Background(), body("x1", "payments.refund", "payments://shop/1", map[string]any{"amount": 900, "card": "4111111111111111"}, ""), alice)
	if err != nil || ex.Decision != policy.RequireApproval || ex.EngineVersion != EngineVersion {
		t.Fatalf("got %+v %v", ex, err)
	}
	raw, _ := json.Marshal(ex)
	if strings.Contains(string(raw), "4111111111111111") {
		t.Fatal("explain echoed params")
	}
	if len(f.rec.events) != 0 {
		t.Fatalf("explain wrote audit: %v", f.rec.types("x1"))
	}
	if recs, _ := f.store.List(context.Background(), approvals.Filter{}); len(recs) != 0 {
		t.Fatal("explain created an approval")
	}
}

func TestReport(t *testing.T) {
	f := newFixture(t, false)
	if d, err := f.svc.Process(context.Background(), body("a1", "orders.read", "shop://orders/1", nil, ""), alice); err != nil || d.ExecutionMode != ModeExternalAuthorized {
		t.Fatalf("authorize: %+v %v", d, err)
	}
	resp, err := f.svc.Report(context.Background(), []byte(`{"action_id":"a1","trace_id":"t-a1","outcome":"FAILED","message":"upstream 503"}`), alice)
	if err != nil || !resp.Recorded {
		t.Fatalf("got %+v %v", resp, err)
	}
	ev := f.rec.last(audit.EventExternalReported)
	if ev.ResultClassification != audit.ResultUpstreamError || !ev.Retryable || ev.Environment != "dev" {
		t.Fatalf("event %+v", ev)
	}
	f.rec.failOn = audit.EventExternalReported
	if _, err := f.svc.Report(context.Background(), []byte(`{"action_id":"a1","trace_id":"t-a1","outcome":"SUCCEEDED"}`), alice); !isCode(err, CodeAudit) {
		t.Fatalf("report with audit down must not say recorded: %v", err)
	}
	for _, bad := range []string{`{"action_id":"a1","trace_id":"t1","outcome":"DONE"}`, `{"action_id":"../x","trace_id":"t1","outcome":"FAILED"}`, `{"action_id":"a1"}`} {
		if _, err := f.svc.Report(context.Background(), []byte(bad), alice); !isCode(err, CodeValidation) {
			t.Fatalf("%s: %v", bad, err)
		}
	}
}

func isCode(err error, code string) bool {
	var se *Error
	return errors.As(err, &se) && se.Code == code
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestExplainMatchesActionForPatches: explain gives the same decision as
// /action for a patch touching a path the patch rule alone would allow.
func TestExplainMatchesActionForPatches(t *testing.T) {
	f := newFixture(t, true)
	params := map[string]any{"patch": "--- a/docs/x.md\n+++ b/docs/x.md\n@@ -1 +1 @@\n-a\n+b\n"}
	b := body("pe1", "repo.apply_patch", "repo://local/workspace", params, "")
	ex, err := f.svc.Explain(context.Background(), b, alice)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.svc.Process(context.Background(), b, alice)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Decision != resp.Decision || ex.Decision != policy.Deny || ex.WhyDenied == nil {
		t.Fatalf("explain %s, action %s", ex.Decision, resp.Decision)
	}
}

// TestRejectIsAudited: a request a transport refused before policy is
// still an audited DENY.
func TestRejectIsAudited(t *testing.T) {
	f := newFixture(t, false)
	env := &action.Envelope{SchemaVersion: "v1", ActionID: "rj1", TraceID: "t", ActionType: "mcp.call",
		Resource: "mcp://retail/refund_order", Params: json.RawMessage(`{"tool_arguments":{"amount":"x"}}`)}
	f.svc.Reject(context.Background(), env, alice, map[string]any{"downstream_transport": "streamable_http"}, audit.ResultValidationError, "VALIDATION_ERROR: amount must be a number")
	ev := f.rec.last(audit.EventActionDecision)
	if ev == nil || ev.ActionID != "rj1" || ev.Decision != policy.Deny || ev.ResultClassification != audit.ResultValidationError ||
		ev.Environment != "dev" || ev.ExecutorMetadata["downstream_transport"] != "streamable_http" {
		t.Fatalf("rejection not audited: %+v", ev)
	}
	// Without a usable envelope the refusal is still recorded, with the
	// class, reason and transport the door gave.
	f.svc.Reject(context.Background(), &action.Envelope{ActionType: "mcp.call"}, alice, map[string]any{"downstream_transport": "stdio"}, audit.ResultUpstreamUnavailable, "upstream down")
	ev = f.rec.last(audit.EventActionDecision)
	if ev == nil || ev.Decision != policy.Deny || ev.ResultClassification != audit.ResultUpstreamUnavailable || ev.Reason != "upstream down" ||
		ev.ExecutorMetadata["downstream_transport"] != "stdio" || ev.Principal != alice.Principal || !ev.Retryable {
		t.Fatalf("rejection without an action not audited: %+v", ev)
	}
}
