package service

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/redact"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// summaryMax bounds the redacted summaries kept in audit events.
const summaryMax = 256

// record writes one event; a failure is an audit error for the caller.
func (s *Service) record(ctx context.Context, ev *audit.Event) error {
	if err := s.cfg.Audit.Record(ctx, ev); err != nil {
		s.cfg.Logger.Error("audit: event not recorded", "event_type", ev.EventType, "trace_id", ev.TraceID, "error", err)
		return Errorf(http.StatusInternalServerError, CodeAudit, "could not record audit event")
	}
	return nil
}

// event fills the identity and action fields common to every event.
func (s *Service) event(a *action.Action, typ string) *audit.Event {
	return &audit.Event{
		EventType:             typ,
		TraceID:               a.TraceID,
		ActionID:              a.ActionID,
		Principal:             a.Principal,
		Agent:                 a.Agent,
		Environment:           a.Environment,
		ActionType:            a.ActionType,
		ResourceNormalized:    a.Resource,
		ParamsHash:            a.ParamsHash,
		ActionFingerprint:     a.Fingerprint,
		ParamsRedactedSummary: s.summary(string(a.Params)),
		EngineVersion:         EngineVersion,
		AssuranceLevel:        s.cfg.AssuranceLevel,
		RiskFlags:             a.RiskFlags,
		RiskLevel:             action.RiskLevel(a.RiskFlags),
	}
}

// decisionEvent adds the decision fields.
func (s *Service) decisionEvent(r *run, typ string) *audit.Event {
	ev := s.event(r.a, typ)
	ev.Decision = r.d.Decision
	ev.Reason = r.d.ReasonCode
	ev.MatchedRuleIDs = r.d.MatchedRuleIDs
	ev.Obligations = obligationsJSON(r.d.Obligations)
	ev.PolicyBundleHash = r.d.PolicyBundleHash
	ev.ExecutorMetadata = r.meta
	if r.approval != nil {
		ev.ApprovalID = r.approval.id
	}
	return ev
}

// finish writes action.completed and trace.end in one durable commit. The
// HTTP API and nomos_mcp call it before the response is released, so an
// answer a client saw always has its complete trace; nomos_guard calls it
// just after its response ended (caddymodule's afterResponse). The action
// has already happened, so a failure here cannot be undone: it is logged
// loudly and the response still reaches the caller.
func (s *Service) finish(ctx context.Context, r *run, resp *Response) {
	ev := s.decisionEvent(r, audit.EventActionCompleted)
	ev.Decision, ev.Reason = resp.Decision, resp.Reason
	ev.DurationMS = s.cfg.Clock().Sub(r.start).Milliseconds()
	ev.ResultClassification = classify(r, resp)
	ev.Retryable = audit.IsRetryable(ev.ResultClassification)
	if resp.ExecutionMode != "" {
		ev.ExecutorMetadata = withMeta(ev.ExecutorMetadata, "execution_mode", resp.ExecutionMode)
	}
	ev.ResultRedactedSummary = s.resultSummary(resp)
	s.observe(r.door, resp.Decision, resp.Reason, r.a.ActionType)
	end := s.event(r.a, audit.EventTraceEnd)
	if err := s.cfg.Audit.RecordAll(ctx, ev, end); err != nil {
		s.cfg.Logger.Error("audit: completion not recorded", "trace_id", r.a.TraceID, "action_id", r.a.ActionID, "error", err)
	}
}

func classify(r *run, resp *Response) string {
	switch {
	case r.class != "" && resp.Decision == policy.Deny:
		return r.class
	case resp.Decision == policy.Deny:
		return audit.ResultDeniedPolicy
	case resp.Decision == policy.RequireApproval:
		return audit.ResultRequireApproval
	case r.class != "":
		return r.class
	}
	return audit.ResultSuccess
}

func withMeta(m map[string]any, k string, v any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for key, val := range m {
		out[key] = val
	}
	out[k] = v
	return out
}

// auditRejected records a request refused before policy. Without an
// envelope there are no ids, but the principal and the reason remain.
func (s *Service) auditRejected(ctx context.Context, door string, env *action.Envelope, id action.Identity, class string, cause error) {
	ev := s.rejectedEvent(env, id)
	ev.Decision, ev.Reason, ev.ResultClassification = policy.Deny, s.summary(cause.Error()), class
	s.observe(door, policy.Deny, class, ev.ActionType)
	_ = s.record(ctx, ev)
}

// rejectedEvent is the action.decision of a request that never became an
// action: the identity, and the ids the envelope had, if any.
func (s *Service) rejectedEvent(env *action.Envelope, id action.Identity) *audit.Event {
	ev := &audit.Event{
		EventType:      audit.EventActionDecision,
		Principal:      id.Principal,
		Agent:          id.Agent,
		Environment:    id.Environment,
		EngineVersion:  EngineVersion,
		AssuranceLevel: s.cfg.AssuranceLevel,
	}
	if env != nil {
		ev.TraceID, ev.ActionID, ev.ActionType = env.TraceID, env.ActionID, env.ActionType
	}
	return ev
}

// summary redacts, then cuts to summaryMax bytes on a rune boundary.
func (s *Service) summary(text string) string {
	out, _ := redact.Cap(s.cfg.Redactor.String(text), summaryMax, 0)
	return out
}

func (s *Service) resultSummary(resp *Response) string {
	b, err := json.Marshal(struct {
		Decision     string `json:"decision"`
		Reason       string `json:"reason,omitempty"`
		Truncated    bool   `json:"truncated,omitempty"`
		BytesWritten int64  `json:"bytes_written,omitempty"`
		StatusCode   int    `json:"status_code,omitempty"`
		ExitCode     *int   `json:"exit_code,omitempty"`
	}{resp.Decision, resp.Reason, resp.Truncated, resp.BytesWritten, resp.StatusCode, resp.ExitCode})
	if err != nil {
		return ""
	}
	return s.summary(strings.TrimSpace(string(b)))
}
