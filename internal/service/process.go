package service

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/errcode"
	"github.com/caddy-nomos/nomos/internal/executor"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// Reason codes the service adds to the policy engine's.
const (
	ReasonAllowByApproval     = "allow_by_approval"
	ReasonApprovalDenied      = "approval_denied"
	ReasonApprovalsNotEnabled = "approvals_not_enabled"
	ReasonUnsupportedAction   = "unsupported_action"
	// ReasonStateUnavailable denies a decision that needs the shared state
	// (Redis) while it cannot be reached; nothing falls back to local state.
	ReasonStateUnavailable = errcode.StateUnavailable
)

// run is the state of one request through the pipeline.
type run struct {
	a        *action.Action
	d        policy.Decision
	approval *approvalInfo
	// targets are the workspace paths policy decided on; resolved are the
	// resolved resources among them that differ from the named ones.
	targets  []executor.Target
	resolved []string
	start    time.Time
	// traceStart is recorded in the same commit as the decision.
	traceStart *audit.Event
	// class and meta describe the outcome for action.completed.
	class string
	meta  map[string]any
	// door is the front door, for metrics.
	door string
	// retryAfter and limit describe a rate-limit or loop-breaker denial.
	retryAfter int64
	limit      *LimitInfo
	// external: an allowed custom action is entered in the report index
	// (the HTTP API's external_authorized mode).
	external bool
}

// Process decodes, normalizes, decides, records and (for built-in types)
// executes one action. id carries the verified principal and agent.
func (s *Service) Process(ctx context.Context, body []byte, id action.Identity) (*Response, error) {
	return s.ProcessWith(ctx, body, id, nil)
}

// ProcessWith is Process for a front door that records transport evidence
// (meta, e.g. downstream_transport) on the action's audit events.
func (s *Service) ProcessWith(ctx context.Context, body []byte, id action.Identity, meta map[string]any) (*Response, error) {
	a, err := s.prepare(ctx, body, id, meta)
	if err != nil {
		return nil, err
	}
	r := &run{a: a, start: s.cfg.Clock(), meta: meta, door: doorOf(ctx, meta), external: true}
	r.traceStart = s.event(a, audit.EventTraceStart)
	if err := s.decide(ctx, r); err != nil {
		return nil, err
	}
	resp := s.respond(ctx, r)
	s.finish(ctx, r, resp)
	return resp, nil
}

// prepare turns the raw body into a normalized action. Failures are audited
// when enough of the envelope was readable to say what was asked.
func (s *Service) prepare(ctx context.Context, body []byte, id action.Identity, meta map[string]any) (*action.Action, error) {
	id.Environment = s.cfg.Environment
	env, err := action.DecodeEnvelope(body)
	if err != nil {
		s.auditRejected(ctx, doorOf(ctx, meta), nil, id, audit.ResultValidationError, err)
		return nil, Errorf(http.StatusBadRequest, CodeValidation, "%s", s.cfg.Redactor.String(err.Error()))
	}
	a, err := action.New(env, id)
	if err != nil {
		s.auditRejected(ctx, doorOf(ctx, meta), env, id, classOf(err), err)
		return nil, Errorf(http.StatusBadRequest, CodeValidation, "%s", s.cfg.Redactor.String(err.Error()))
	}
	return a, nil
}

// classOf is the audit classification of a request that could not become
// an action.
func classOf(err error) string {
	if errors.Is(err, action.ErrNormalization) {
		return audit.ResultNormalizationError
	}
	return audit.ResultValidationError
}

// decide evaluates policy, resolves approvals and commits the decision to
// audit before anything runs. A decision that cannot be recorded denies.
// trace.start, action.decision and the approval event are one durable
// commit: none is worth a wait of its own before the action runs.
func (s *Service) decide(ctx context.Context, r *run) error {
	if !s.limited(ctx, r) {
		d, class := s.evaluate(r.a)
		res := s.evaluateTargets(r.a, d, class)
		r.d, r.class, r.targets, r.resolved = res.d, res.class, res.targets, res.resolved
		if len(r.resolved) > 0 {
			r.meta = withMeta(r.meta, "resolved_resources", r.resolved)
		}
	}
	if r.d.Decision == policy.RequireApproval {
		if err := s.resolveApproval(ctx, r); err != nil {
			_ = s.record(ctx, r.traceStart)
			return err
		}
	}
	s.indexExternal(ctx, r)
	events := []*audit.Event{r.traceStart, s.decisionEvent(r, audit.EventActionDecision)}
	if ev := s.approvalEvent(r); ev != nil {
		events = append(events, ev)
	}
	if err := s.cfg.Audit.RecordAll(ctx, events...); err != nil {
		s.cfg.Logger.Error("audit: decision not recorded; action denied", "trace_id", r.a.TraceID, "action_id", r.a.ActionID, "error", err)
		return Errorf(http.StatusInternalServerError, CodeAudit, "could not record authorization decision; action not authorized")
	}
	return nil
}

// indexExternal enters an allowed custom action in the report index before
// the decision is recorded, so an index that cannot be written denies the
// action (state_unavailable) instead of authorizing one that could never
// be reported.
func (s *Service) indexExternal(ctx context.Context, r *run) {
	if !r.external || r.d.Decision != policy.Allow || action.IsBuiltin(r.a.ActionType) {
		return
	}
	if err := s.cfg.Authorized.Add(ctx, r.a.Principal, r.a.TraceID, r.a.ActionID, s.cfg.Clock()); err != nil {
		s.cfg.Logger.Error("report index: shared state unavailable; action denied", "trace_id", r.a.TraceID, "error", err)
		stateDenied(r)
	}
}

// evaluate runs policy; apply_patch additionally checks every touched path
// as its own write, and the strictest outcome wins. A patch that cannot be
// interpreted also returns the audit classification of why.
func (s *Service) evaluate(a *action.Action) (policy.Decision, string) {
	d := s.cfg.Policy.Evaluate(a)
	if a.ActionType != action.TypeRepoApplyPatch || d.Decision == policy.Deny {
		return d, ""
	}
	return s.evaluatePatchPaths(a, d)
}

// respond turns the decision into a response, executing allowed built-ins.
func (s *Service) respond(ctx context.Context, r *run) *Response {
	resp := s.baseResponse(r)
	if r.d.Decision != policy.Allow {
		return resp
	}
	if !action.IsBuiltin(r.a.ActionType) {
		resp.ExecutionMode = ModeExternalAuthorized
		resp.ReportPath = ReportPath
		return resp
	}
	if s.cfg.Executor == nil {
		return s.deny(resp, ReasonUnsupportedAction, "built-in action execution is not enabled on this route")
	}
	return s.execute(ctx, r, resp)
}

func (s *Service) baseResponse(r *run) *Response {
	resp := &Response{
		Decision: r.d.Decision,
		Reason:   r.d.ReasonCode,
		TraceID:  r.a.TraceID,
		ActionID: r.a.ActionID,
		RuleIDs:  r.d.MatchedRuleIDs,
		Limit:    r.limit,
	}
	resp.RetryAfterSeconds = r.retryAfter
	if r.d.Decision != policy.Deny {
		resp.Obligations = obligationsOrNil(r.d.Obligations)
	}
	if r.approval != nil {
		resp.ApprovalID = r.approval.id
		resp.ApprovalFingerprint = r.approval.fingerprint
		resp.ApprovalExpiresAt = r.approval.expiresAt.UTC().Format(time.RFC3339Nano)
	}
	return resp
}

func (s *Service) deny(resp *Response, code, msg string) *Response {
	resp.Decision = policy.Deny
	resp.Reason = code + ": " + s.cfg.Redactor.String(msg)
	resp.Obligations = nil
	resp.ExecutionMode, resp.ReportPath = "", ""
	return resp
}

// errRedirectRefused refuses a redirect hop policy does not let through.
var errRedirectRefused = errors.New("redirect hop refused by policy")

// redirectHop decides a redirect hop of a as the same request on the hop's
// resource: a DENY rule, or a rule asking for approval (the approval given
// was for the first resource), refuses it. A hop no rule names is left to
// the decision's own redirect obligations (http_redirects and the
// net_allowlist hosts), as before.
func (s *Service) redirectHop(a *action.Action) func(string) error {
	return func(resource string) error {
		hop := *a
		hop.Resource = resource
		d := s.cfg.Policy.Evaluate(&hop)
		if d.Decision == policy.RequireApproval || d.Decision == policy.Deny && d.ReasonCode != policy.ReasonDenyByDefault {
			return errRedirectRefused
		}
		return nil
	}
}

// execute runs the executor and maps its result; executor refusals are
// DENY outcomes, not transport errors.
func (s *Service) execute(ctx context.Context, r *run, resp *Response) *Response {
	if r.a.ActionType == action.TypeNetHTTPRequest {
		ctx = executor.WithRedirectCheck(ctx, s.redirectHop(r.a))
	}
	res, err := s.cfg.Executor.Execute(ctx, r.a, r.d, r.targets)
	if err != nil {
		var ee *executor.Error
		if errors.As(err, &ee) {
			r.class = ee.Classification
			return s.deny(resp, ee.Code, ee.Message)
		}
		r.class = audit.ResultExecutionError
		return s.deny(resp, "execution_error", err.Error())
	}
	r.class = res.Classification
	for k, v := range res.Metadata {
		r.meta = withMeta(r.meta, k, v)
	}
	resp.ExecutionMode = ModeExecuted
	resp.Output, resp.Truncated, resp.BytesWritten = res.Output, res.Truncated, res.BytesWritten
	resp.Stdout, resp.Stderr, resp.ExitCode = res.Stdout, res.Stderr, res.ExitCode
	resp.StatusCode, resp.CredentialLeaseID = res.StatusCode, res.CredentialLeaseID
	return resp
}
