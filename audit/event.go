package audit

import (
	"encoding/json"
	"time"
)

// SchemaVersion is the version of the event schema this package writes.
const SchemaVersion = "v1"

// Event types. One trace usually reads trace.start, action.decision,
// (approval.*), action.completed, trace.end.
const (
	EventTraceStart        = "trace.start"
	EventActionDecision    = "action.decision"
	EventApprovalRequested = "approval.requested"
	EventApprovalApplied   = "approval.applied"
	EventApprovalDecided   = "approval.decided"
	EventActionCompleted   = "action.completed"
	EventExternalReported  = "action.external_reported"
	EventTraceEnd          = "trace.end"
	// EventMCPToolsList records what a tools/list showed and what policy
	// hid from the caller.
	EventMCPToolsList = "mcp.tools_list"
	// EventMCPToolPin records what happened to the pinned definition of an
	// upstream tool: first use, a new or changed definition (quarantined
	// under pin enforce), or an operator's accept or reject.
	EventMCPToolPin = "mcp.tool_pin"
)

// Event is one audit record. Empty fields are omitted from its JSON, except
// the identity fields every event has and the two chain fields, which are
// always present so a reader never has to guess whether a link is missing.
type Event struct {
	SchemaVersion string `json:"schema_version"`
	// EventID is the idempotency id of the event: 32 hex characters, the
	// millisecond it was made then 80 random bits (time-ordered, so the
	// sqlite sink's index grows at its right edge).
	// Collectors deduplicate on it, since delivery is at least once.
	EventID   string    `json:"event_id"`
	Timestamp time.Time `json:"timestamp"`
	EventType string    `json:"event_type"`
	TraceID   string    `json:"trace_id"`
	ActionID  string    `json:"action_id,omitempty"`

	Principal   string `json:"principal,omitempty"`
	Agent       string `json:"agent,omitempty"`
	Environment string `json:"environment,omitempty"`

	ActionType            string `json:"action_type,omitempty"`
	ResourceNormalized    string `json:"resource_normalized,omitempty"`
	ParamsHash            string `json:"params_hash,omitempty"`
	ActionFingerprint     string `json:"action_fingerprint,omitempty"`
	ParamsRedactedSummary string `json:"params_redacted_summary,omitempty"`

	Decision         string          `json:"decision,omitempty"`
	Reason           string          `json:"reason,omitempty"`
	MatchedRuleIDs   []string        `json:"matched_rule_ids,omitempty"`
	Obligations      json.RawMessage `json:"obligations,omitempty"`
	PolicyBundleHash string          `json:"policy_bundle_hash,omitempty"`
	EngineVersion    string          `json:"engine_version,omitempty"`
	AssuranceLevel   string          `json:"assurance_level,omitempty"`
	RiskLevel        string          `json:"risk_level,omitempty"`
	RiskFlags        []string        `json:"risk_flags,omitempty"`
	ApprovalID       string          `json:"approval_id,omitempty"`

	DurationMS            int64          `json:"duration_ms,omitempty"`
	ResultClassification  string         `json:"result_classification,omitempty"`
	Retryable             bool           `json:"retryable,omitempty"`
	ExecutorMetadata      map[string]any `json:"executor_metadata,omitempty"`
	ResultRedactedSummary string         `json:"result_redacted_summary,omitempty"`

	// PrevEventHash is the EventHash of the event recorded just before this
	// one; empty only for the first event of a chain.
	PrevEventHash string `json:"prev_event_hash"`
	// EventHash is the SHA-256 hex of the canonical JSON of this event with
	// event_hash itself empty. See Hash.
	EventHash string `json:"event_hash"`
}

// Result classifications: what finally happened to an action, for
// dashboards and for agents deciding whether to retry.
const (
	ResultSuccess             = "SUCCESS"
	ResultDeniedPolicy        = "DENIED_POLICY"
	ResultRequireApproval     = "REQUIRE_APPROVAL"
	ResultValidationError     = "VALIDATION_ERROR"
	ResultNormalizationError  = "NORMALIZATION_ERROR"
	ResultSandboxViolation    = "SANDBOX_VIOLATION"
	ResultExecutionError      = "EXECUTION_ERROR"
	ResultExecTimeout         = "EXEC_TIMEOUT"
	ResultOutputLimit         = "OUTPUT_LIMIT"
	ResultRateLimitExceeded   = "RATE_LIMIT_EXCEEDED"
	ResultLoopBreakerTripped  = "LOOP_BREAKER_TRIPPED"
	ResultToolError           = "TOOL_ERROR"
	ResultUpstreamError       = "UPSTREAM_ERROR"
	ResultUpstreamUnavailable = "UPSTREAM_UNAVAILABLE"
	ResultUpstreamTimeout     = "UPSTREAM_TIMEOUT"
	ResultUpstreamCanceled    = "UPSTREAM_CANCELED"
	ResultInternalError       = "INTERNAL_ERROR"
	// ResultStateUnavailable: the shared state (Redis) a decision needs
	// could not be reached, so the action was denied.
	ResultStateUnavailable = "STATE_UNAVAILABLE"
)

// IsRetryable reports the default Retryable value for a result
// classification: true where the same request may succeed later without
// being changed, because the cause is time, load or a human.
func IsRetryable(classification string) bool {
	switch classification {
	case ResultRequireApproval, ResultExecTimeout, ResultRateLimitExceeded, ResultLoopBreakerTripped,
		ResultUpstreamError, ResultUpstreamUnavailable, ResultUpstreamTimeout,
		ResultUpstreamCanceled, ResultInternalError, ResultStateUnavailable:
		return true
	}
	return false
}
