package service

import (
	"encoding/json"

	"github.com/caddy-nomos/nomos/policy"
)

// Execution modes of an allowed action.
const (
	ModeExternalAuthorized = "external_authorized"
	ModeExecuted           = "executed"
	ModeForwarded          = "mcp_forwarded"
	// ModeHTTPForwarded is an allowed request nomos_guard passed on to the
	// handler after it (typically reverse_proxy).
	ModeHTTPForwarded = "http_forwarded"
)

// Response is the v1 action response. Every field except Decision is
// omitted when empty. Policy outcomes, including DENY, are Responses.
type Response struct {
	Decision            string              `json:"decision"`
	Reason              string              `json:"reason,omitempty"`
	TraceID             string              `json:"trace_id,omitempty"`
	ActionID            string              `json:"action_id,omitempty"`
	ApprovalID          string              `json:"approval_id,omitempty"`
	ApprovalFingerprint string              `json:"approval_fingerprint,omitempty"`
	ApprovalExpiresAt   string              `json:"approval_expires_at,omitempty"`
	ExecutionMode       string              `json:"execution_mode,omitempty"`
	ReportPath          string              `json:"report_path,omitempty"`
	Output              string              `json:"output,omitempty"`
	Truncated           bool                `json:"truncated,omitempty"`
	BytesWritten        int64               `json:"bytes_written,omitempty"`
	Stdout              string              `json:"stdout,omitempty"`
	Stderr              string              `json:"stderr,omitempty"`
	ExitCode            *int                `json:"exit_code,omitempty"`
	StatusCode          int                 `json:"status_code,omitempty"`
	CredentialLeaseID   string              `json:"credential_lease_id,omitempty"`
	Obligations         *policy.Obligations `json:"obligations,omitempty"`
	// RetryAfterSeconds and Limit are set on a RATE_LIMIT_EXCEEDED or
	// LOOP_BREAKER_TRIPPED denial: wait that long, then retry.
	RetryAfterSeconds int64      `json:"retry_after_seconds,omitempty"`
	Limit             *LimitInfo `json:"limit,omitempty"`
	// RuleIDs are the matched rule ids, for access-log placeholders and
	// audit only; clients never see them.
	RuleIDs []string `json:"-"`
}

// obligationsOrNil keeps empty obligations out of responses and audit.
func obligationsOrNil(o policy.Obligations) *policy.Obligations {
	b, err := json.Marshal(o)
	if err != nil || string(b) == "{}" {
		return nil
	}
	return &o
}

func obligationsJSON(o policy.Obligations) json.RawMessage {
	b, err := json.Marshal(o)
	if err != nil || string(b) == "{}" {
		return nil
	}
	return b
}
