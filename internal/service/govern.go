package service

import (
	"context"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// Authorization is a decided and recorded request that a transport (the MCP
// gateway) carries out itself. Complete must be called once it is done.
type Authorization struct {
	Response *Response
	// Obligations are the merged obligations of the decision.
	Obligations policy.Obligations
	run         *run
}

// Authorize runs the pipeline up to the recorded decision for an envelope
// a transport built: normalize, policy, approvals, decision audit. meta is
// transport evidence (downstream session, upstream server) for every audit
// event of the action. Nothing is executed.
func (s *Service) Authorize(ctx context.Context, env *action.Envelope, id action.Identity, meta map[string]any) (*Authorization, error) {
	id.Environment = s.cfg.Environment
	a, err := action.New(env, id)
	if err != nil {
		s.auditRejected(ctx, doorOf(ctx, meta), env, id, classOf(err), err)
		return nil, Errorf(400, CodeValidation, "%s", s.cfg.Redactor.String(err.Error()))
	}
	r := &run{a: a, start: s.cfg.Clock(), meta: meta, door: doorOf(ctx, meta)}
	r.traceStart = s.event(a, audit.EventTraceStart)
	if err := s.decide(ctx, r); err != nil {
		return nil, err
	}
	resp := s.baseResponse(r)
	if resp.Decision == policy.Allow {
		resp.ExecutionMode = ModeForwarded
	}
	return &Authorization{Response: resp, Obligations: r.d.Obligations, run: r}, nil
}

// ApprovalExpiresAt is the expiry of the approval the decision is bound to.
func (a *Authorization) ApprovalExpiresAt() time.Time {
	if a.run == nil || a.run.approval == nil {
		return time.Time{}
	}
	return a.run.approval.expiresAt
}

// Complete records how an authorized request ended: action.completed with
// the transport's classification, then trace.end. An empty class keeps the
// decision's own (DENIED_POLICY, REQUIRE_APPROVAL, RATE_LIMIT_EXCEEDED),
// for a request the transport did not carry out.
func (s *Service) Complete(ctx context.Context, auth *Authorization, class string, meta map[string]any) {
	if auth == nil || auth.run == nil {
		return
	}
	r := auth.run
	if class != "" {
		r.class = class
	}
	for k, v := range meta {
		r.meta = withMeta(r.meta, k, v)
	}
	s.finish(ctx, r, auth.Response)
}

// Reachable reports whether the identity could be allowed (or sent for
// approval) some call of actionType on resource; see policy.Engine.Reachable.
// toolFingerprint is the definition an mcp.call would target (see
// action.Envelope.WithToolDefinition), so a tool_fingerprints rule lists
// only the reviewed definition.
func (s *Service) Reachable(id action.Identity, actionType, resource, toolFingerprint string) bool {
	res, err := action.NormalizeResource(actionType, resource)
	if err != nil {
		return false
	}
	a := &action.Action{ActionType: actionType, Resource: res, Principal: id.Principal, Agent: id.Agent,
		Environment: s.cfg.Environment, Params: []byte("{}")}
	if actionType == action.TypeMCPCall {
		a.ToolFingerprint = toolFingerprint
	}
	a.RiskFlags = action.ComputeRiskFlags(a)
	return s.cfg.Policy.Reachable(a)
}

// Reject records a request a transport refused before policy (an unknown
// or hidden MCP name, arguments that fail the tool's schema, an upstream
// that is unavailable): an action.decision DENY with the reason the client
// was told, classified class, with the transport's meta.
func (s *Service) Reject(ctx context.Context, env *action.Envelope, id action.Identity, meta map[string]any, class, reason string) {
	id.Environment = s.cfg.Environment
	var ev *audit.Event
	if a, err := action.New(env, id); err == nil {
		ev = s.event(a, audit.EventActionDecision)
	} else {
		ev = s.rejectedEvent(env, id)
	}
	ev.Decision, ev.Reason = policy.Deny, s.summary(reason)
	ev.ResultClassification = class
	ev.Retryable = audit.IsRetryable(class)
	ev.ExecutorMetadata = meta
	ev.PolicyBundleHash = s.cfg.Policy.Hash()
	s.observe(doorOf(ctx, meta), policy.Deny, class, ev.ActionType)
	_ = s.record(ctx, ev)
}

// Discovered records what a listing showed the identity and what policy
// hid (event type mcp.tools_list); meta is the transport's evidence.
func (s *Service) Discovered(ctx context.Context, id action.Identity, traceID string, meta map[string]any, shown, hidden []string) {
	ev := s.rejectedEvent(&action.Envelope{TraceID: traceID}, id)
	ev.EventType = audit.EventMCPToolsList
	ev.Environment = s.cfg.Environment
	ev.ExecutorMetadata = withMeta(withMeta(meta, "tools_shown", nonNilList(shown)), "tools_hidden", nonNilList(hidden))
	ev.PolicyBundleHash = s.cfg.Policy.Hash()
	_ = s.record(ctx, ev)
}

func nonNilList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
