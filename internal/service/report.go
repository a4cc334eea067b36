package service

import (
	"context"
	"net/http"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/policy/action"
)

// Outcomes a caller may report for an external action.
const (
	OutcomeSucceeded = "SUCCEEDED"
	OutcomeFailed    = "FAILED"
)

// ReportRequest is the body of POST /actions/report.
type ReportRequest struct {
	ActionID string `json:"action_id"`
	TraceID  string `json:"trace_id"`
	Outcome  string `json:"outcome"`
	Message  string `json:"message,omitempty"`
}

// ReportResponse confirms that the report is stored in audit.
type ReportResponse struct {
	Recorded bool   `json:"recorded"`
	TraceID  string `json:"trace_id"`
	ActionID string `json:"action_id"`
	Outcome  string `json:"outcome"`
}

// Report records the caller's claim about an action Nomos authorized but
// did not execute. It is evidence of the claim, not proof of the outcome.
// Only the principal the action was authorized for may report it, within
// the report window; any other report is a 404, as if the action did not
// exist.
func (s *Service) Report(ctx context.Context, body []byte, id action.Identity) (*ReportResponse, error) {
	var req ReportRequest
	if err := decodeStrict(body, &req, "action_id", "trace_id", "outcome", "message"); err != nil {
		return nil, err
	}
	if err := validateReport(req); err != nil {
		return nil, err
	}
	ok, err := s.cfg.Authorized.Reportable(ctx, id.Principal, req.TraceID, req.ActionID, s.cfg.Clock())
	if err != nil {
		s.cfg.Logger.Error("report index: shared state unavailable; report refused", "trace_id", req.TraceID, "error", err)
		return nil, stateError()
	}
	if !ok {
		return nil, Errorf(http.StatusNotFound, CodeNotFound, "no action with this trace_id and action_id was authorized for this principal, or its report window has passed")
	}
	class := audit.ResultSuccess
	if req.Outcome == OutcomeFailed {
		class = audit.ResultUpstreamError
	}
	ev := &audit.Event{
		EventType:             audit.EventExternalReported,
		TraceID:               req.TraceID,
		ActionID:              req.ActionID,
		Principal:             id.Principal,
		Agent:                 id.Agent,
		Environment:           s.cfg.Environment,
		ResultClassification:  class,
		Retryable:             req.Outcome == OutcomeFailed,
		ResultRedactedSummary: s.summary(req.Message),
		EngineVersion:         EngineVersion,
		AssuranceLevel:        s.cfg.AssuranceLevel,
		ExecutorMetadata: map[string]any{
			"execution_mode": "caller_reported", "nomos_executed": false, "reported_outcome": req.Outcome,
		},
	}
	if err := s.record(ctx, ev); err != nil {
		return nil, err
	}
	return &ReportResponse{Recorded: true, TraceID: req.TraceID, ActionID: req.ActionID, Outcome: req.Outcome}, nil
}

func validateReport(req ReportRequest) error {
	if !action.ValidID(req.ActionID) || !action.ValidID(req.TraceID) {
		return Errorf(http.StatusBadRequest, CodeValidation, "action_id and trace_id must match %s", action.IDPattern)
	}
	if req.Outcome != OutcomeSucceeded && req.Outcome != OutcomeFailed {
		return Errorf(http.StatusBadRequest, CodeValidation, "outcome must be SUCCEEDED or FAILED")
	}
	if len(req.Message) > 4096 {
		return Errorf(http.StatusBadRequest, CodeValidation, "message exceeds 4096 bytes")
	}
	return nil
}
