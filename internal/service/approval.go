package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/internal/redact"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// scopeClassActionResource is the only class scope an obligation may ask for.
const scopeClassActionResource = "action_type_resource"

// approvalInfo is the approval a decision is bound to.
type approvalInfo struct {
	id          string
	fingerprint string
	expiresAt   time.Time
	// applied is true when an approved record turned the decision to ALLOW;
	// created when a new pending record was made.
	applied bool
	created bool
}

// scope returns the scope type and key an approval for the run binds to. A
// patch is always bound to its exact content: its resource names the whole
// workspace, so a class scope would let one approval cover any patch. An
// action whose paths resolve elsewhere is also bound to where they lead.
func scope(r *run) (string, string) {
	a, d := r.a, r.d
	if d.Obligations.ApprovalScopeClass == scopeClassActionResource && a.ActionType != action.TypeRepoApplyPatch {
		// Everything the fingerprint binds but the params: the type, the
		// resource, the tool definition an mcp.call targets, and the paths
		// the resource resolved to, as one JSON array (no separator a
		// resource could contain makes two tuples one key).
		var resolved string
		if len(r.resolved) > 0 {
			resolved = boundFingerprint("", r.resolved)
		}
		key, _ := json.Marshal([]string{a.ActionType, a.Resource, a.ToolFingerprint, resolved})
		return approvals.ScopeClass, string(key)
	}
	return approvals.ScopeFingerprint, approvalFingerprint(r)
}

// approvalFingerprint is the fingerprint an approval for the run records:
// the action's, bound to its resolved paths when they differ.
func approvalFingerprint(r *run) string {
	return boundFingerprint(r.a.Fingerprint, r.resolved)
}

// resolveApproval applies a presented approval or creates (or reuses) a
// pending one. Only an APPROVED, unexpired, scope- and identity-equal record
// allows; anything else leaves the action waiting or denied.
func (s *Service) resolveApproval(ctx context.Context, r *run) error {
	if s.cfg.Approvals == nil {
		r.d.Decision, r.d.ReasonCode = policy.Deny, ReasonApprovalsNotEnabled
		return nil
	}
	id, err := action.ApprovalID(r.a)
	if err != nil {
		return Errorf(http.StatusBadRequest, CodeValidation, "%s", err.Error())
	}
	if id != "" {
		done, err := s.useApproval(ctx, r, id)
		if err != nil || done {
			return err
		}
	}
	return s.pendingApproval(ctx, r)
}

// useApproval tries the presented approval id. It reports done when the
// decision is final (allowed, or denied by the reviewer).
func (s *Service) useApproval(ctx context.Context, r *run, id string) (bool, error) {
	st := s.cfg.Approvals
	scopeType, key := scope(r)
	rec, err := st.Use(ctx, id, key, r.a.Principal, r.a.Agent, r.a.Environment, s.cfg.Clock())
	if err == nil {
		r.d.Decision, r.d.ReasonCode = policy.Allow, ReasonAllowByApproval
		r.approval = &approvalInfo{id: rec.ID, fingerprint: rec.Fingerprint, expiresAt: rec.ExpiresAt, applied: true}
		return true, nil
	}
	if isStateDown(err) {
		stateDenied(r)
		return true, nil
	}
	rec, gerr := st.Get(ctx, id)
	if errors.Is(gerr, approvals.ErrNotFound) {
		return false, nil
	}
	if isStateDown(gerr) {
		stateDenied(r)
		return true, nil
	}
	if gerr != nil {
		return false, Errorf(http.StatusInternalServerError, CodeInternal, "approval store unavailable")
	}
	if rec.Status == approvals.Denied && rec.ScopeType == scopeType && rec.ScopeKey == key && sameIdentity(rec, r.a) {
		r.d.Decision, r.d.ReasonCode = policy.Deny, ReasonApprovalDenied
		r.approval = &approvalInfo{id: rec.ID, fingerprint: rec.Fingerprint, expiresAt: rec.ExpiresAt}
		return true, nil
	}
	return false, nil
}

// stateDenied turns the run into a DENY because the shared state it
// needs is unreachable. The decision is audited like any other.
func stateDenied(r *run) {
	r.d.Decision, r.d.ReasonCode = policy.Deny, ReasonStateUnavailable
	r.d.Obligations = policy.Obligations{}
	r.class = audit.ResultStateUnavailable
	r.approval = nil
}

func sameIdentity(rec approvals.Record, a *action.Action) bool {
	return rec.Principal == a.Principal && rec.Agent == a.Agent && rec.Environment == a.Environment
}

// pendingApproval creates or reuses the pending approval for this action.
func (s *Service) pendingApproval(ctx context.Context, r *run) error {
	scopeType, key := scope(r)
	req := approvals.Request{
		Fingerprint: approvalFingerprint(r), ScopeType: scopeType, ScopeKey: key,
		TraceID: r.a.TraceID, ActionID: r.a.ActionID, ActionType: r.a.ActionType,
		Resource: r.a.Resource, ParamsHash: r.a.ParamsHash, ParamsPreview: s.paramsPreview(r.a, r.d.MatchedRuleIDs),
		Principal: r.a.Principal, Agent: r.a.Agent, Environment: r.a.Environment,
		SingleUse: s.cfg.SingleUseApprovals,
	}
	rec, created, err := s.cfg.Approvals.CreateOrGetPending(ctx, req, s.cfg.ApprovalTTL, s.cfg.Clock())
	if isStateDown(err) {
		s.cfg.Logger.Error("approvals: shared state unavailable; action denied", "trace_id", r.a.TraceID, "error", err)
		stateDenied(r)
		return nil
	}
	if err != nil {
		s.cfg.Logger.Error("approvals: could not create pending approval", "trace_id", r.a.TraceID, "error", err)
		return Errorf(http.StatusInternalServerError, CodeInternal, "approval store unavailable")
	}
	r.approval = &approvalInfo{id: rec.ID, fingerprint: rec.Fingerprint, expiresAt: rec.ExpiresAt, created: created}
	return nil
}

// paramsPreview is what a reviewer sees of the params: redacted like the
// audit summaries, within the store's limit. Params too long to show
// whole (the agent chooses their keys, so it could pad ahead of the one
// that matters) start with the values the deciding rules' params_match
// paths name, each on its own line, then the params cut, said so: a
// reviewer never approves an amount the preview hid.
func (s *Service) paramsPreview(a *action.Action, ruleIDs []string) string {
	full := visible(s.cfg.Redactor.String(string(a.Params)))
	if len(full) <= approvals.MaxPreviewBytes {
		return full
	}
	var b strings.Builder
	var root any
	dec := json.NewDecoder(bytes.NewReader(a.Params))
	dec.UseNumber()
	_ = dec.Decode(&root)
	for _, p := range s.cfg.Policy.ParamsPaths(ruleIDs) {
		v := "(absent)"
		if val, ok := valueAt(root, strings.Split(p, ".")); ok {
			raw, _ := json.Marshal(val)
			var cut bool
			if v, cut = redact.Cap(visible(s.cfg.Redactor.String(string(raw))), previewValueBytes, 0); cut {
				v += "…"
			}
		}
		fmt.Fprintf(&b, "%s: %s\n", p, v)
	}
	fmt.Fprintf(&b, "params (%d bytes, cut to fit): %s", len(full), full)
	out, _ := redact.Cap(b.String(), int64(approvals.MaxPreviewBytes-len("…")), 0)
	return out + "…"
}

// visible escapes, as JSON would, the characters that display as nothing
// or reorder the text around them (format characters: bidi overrides and
// isolates, zero-width spaces; line and paragraph separators), so a
// reviewer reads the preview as the bytes are: "\u202e10000" is not shown
// as "00001".
func visible(s string) string {
	if !strings.ContainsFunc(s, action.Invisible) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case !action.Invisible(r):
			b.WriteRune(r)
		case r > 0xFFFF:
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(&b, "\\u%04x\\u%04x", hi, lo)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

// previewValueBytes caps one decisive value in a cut preview.
const previewValueBytes = 160

// valueAt walks decoded JSON by object key and array index.
func valueAt(v any, path []string) (any, bool) {
	for _, seg := range path {
		switch node := v.(type) {
		case map[string]any:
			next, ok := node[seg]
			if !ok {
				return nil, false
			}
			v = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(node) {
				return nil, false
			}
			v = node[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// approvalEvent is the approval.requested or approval.applied event that
// follows the decision event, or nil.
func (s *Service) approvalEvent(r *run) *audit.Event {
	if r.approval == nil {
		return nil
	}
	switch {
	case r.approval.applied:
		return s.decisionEvent(r, audit.EventApprovalApplied)
	case r.d.Decision == policy.RequireApproval:
		return s.decisionEvent(r, audit.EventApprovalRequested)
	}
	return nil
}

// DecideRequest is the body of POST /approvals/decide.
type DecideRequest struct {
	ApprovalID string `json:"approval_id"`
	Decision   string `json:"decision"`
}

// DecideResponse states the decision that was actually recorded.
type DecideResponse struct {
	ApprovalID          string `json:"approval_id"`
	Status              string `json:"status"`
	Reason              string `json:"reason"`
	DecidedBy           string `json:"decided_by,omitempty"`
	ApprovalFingerprint string `json:"approval_fingerprint,omitempty"`
	ApprovalExpiresAt   string `json:"approval_expires_at,omitempty"`
}

// Decide records a reviewer's decision. The reviewer must be a listed
// approver (an empty list authorizes nobody) and, unless self-approval is
// allowed, not the principal that requested the action; both refusals are
// audited. The decision is audited before it takes effect.
func (s *Service) Decide(ctx context.Context, body []byte, principal string) (*DecideResponse, error) {
	if s.cfg.Approvals == nil {
		return nil, Errorf(http.StatusNotFound, CodeNotEnabled, "approvals are not enabled")
	}
	var req DecideRequest
	if err := decodeStrict(body, &req, "approval_id", "decision"); err != nil {
		return nil, err
	}
	if req.ApprovalID == "" {
		return nil, Errorf(http.StatusBadRequest, CodeValidation, "approval_id is required")
	}
	status, err := approvals.ParseDecision(req.Decision)
	if err != nil {
		return nil, Errorf(http.StatusBadRequest, CodeValidation, "decision must be APPROVE or DENY")
	}
	if !s.approvers[principal] {
		return nil, s.notApprover(ctx, req.ApprovalID, principal)
	}
	rec, err := s.decider.Decide(ctx, req.ApprovalID, status, principal, nil)
	if err != nil {
		return nil, err
	}
	return &DecideResponse{
		ApprovalID: rec.ID, Status: rec.Status, Reason: "approval_recorded", DecidedBy: rec.DecidedBy,
		ApprovalFingerprint: rec.Fingerprint, ApprovalExpiresAt: rec.ExpiresAt.UTC().Format(time.RFC3339Nano),
	}, nil
}

// notApprover audits and refuses a decision by a principal that is not an
// approver. The approval is named only when it exists.
func (s *Service) notApprover(ctx context.Context, id, principal string) error {
	rec, err := s.cfg.Approvals.Get(ctx, id)
	if err != nil {
		rec = approvals.Record{}
	}
	return s.decider.refuse(ctx, rec, principal, nil, "not_an_approver", "principal is not an approver")
}

func decideError(err error) error {
	switch {
	case isStateDown(err):
		return stateError()
	case errors.Is(err, approvals.ErrNotFound):
		return Errorf(http.StatusNotFound, CodeApproval, "approval not found")
	case errors.Is(err, approvals.ErrConflict):
		return Errorf(http.StatusConflict, CodeApproval, "approval already decided differently")
	case errors.Is(err, approvals.ErrExpired):
		return Errorf(http.StatusBadRequest, CodeApproval, "approval expired")
	}
	return Errorf(http.StatusInternalServerError, CodeInternal, "approval store unavailable")
}

// DecidedEvent is the approval.decided audit event for a recorded
// decision, whoever made it (the HTTP API or the CLI).
func DecidedEvent(rec approvals.Record, approver, env string) *audit.Event {
	return &audit.Event{
		EventType:          audit.EventApprovalDecided,
		TraceID:            rec.TraceID,
		ActionID:           rec.ActionID,
		Principal:          approver,
		Environment:        env,
		ActionType:         rec.ActionType,
		ResourceNormalized: rec.Resource,
		ParamsHash:         rec.ParamsHash,
		ActionFingerprint:  rec.Fingerprint,
		ApprovalID:         rec.ID,
		Decision:           rec.Status,
		Reason:             "approval_recorded",
		EngineVersion:      EngineVersion,
		ExecutorMetadata:   map[string]any{"requested_by": rec.Principal, "requested_by_agent": rec.Agent},
	}
}
