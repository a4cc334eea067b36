package mcp

import (
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// Identity is the authenticated caller of one downstream request.
type Identity struct {
	Principal string
	Agent     string
}

// Action types of governed MCP requests.
const (
	ActionCall           = "mcp.call"
	ActionResourceRead   = "mcp.resource_read"
	ActionPromptGet      = "mcp.prompt_get"
	ActionCompletion     = "mcp.completion"
	ActionSample         = "mcp.sample"
	ActionElicit         = "mcp.elicit"
	DecisionAllow        = "ALLOW"
	DecisionDeny         = "DENY"
	DecisionRequireAppr  = "REQUIRE_APPROVAL"
	DownstreamTransport  = "streamable_http"
	approvalArgumentName = "approval_id"
)

// Governor runs the Nomos pipeline for governed MCP requests.
type Governor interface {
	// Authorize runs the Nomos pipeline (rate limits, policy, approvals,
	// decision audit) for one governed MCP request. An error is an internal
	// failure: the gateway fails closed.
	Authorize(ctx context.Context, req AuthzRequest) (AuthzResult, error)
	// Completed records the outcome (audit action.completed). It runs once
	// the upstream has answered, before the answer is sent on, so it must
	// not block for long.
	Completed(ctx context.Context, req AuthzRequest, res AuthzResult, out Outcome)
	// Visible reports whether tools/list may show tool of upstream server to
	// id: true when some rule could ALLOW or REQUIRE_APPROVAL an mcp.call on
	// mcp://<server>/<tool>. It must not audit a decision and must not
	// over-report: when unsure, answer false.
	Visible(ctx context.Context, id Identity, server, tool string) bool
}

// ListObserver may be implemented by a Governor to audit discovery (the
// mcp.tools_list event): after each tools/list it learns which tools were
// shown and which were hidden, as "<server>/<tool>" names.
type ListObserver interface {
	ToolsListed(ctx context.Context, id Identity, metadata map[string]string, shown, hidden []string)
}

// RejectionRecorder may be implemented by a Governor to audit a tools/call
// the gateway refused before asking for a decision: arguments that fail the
// tool's inputSchema, or a tool without a schema. class is the result
// class (ARGUMENT_VALIDATION_ERROR) and reason what the client was told.
type RejectionRecorder interface {
	Rejected(ctx context.Context, req AuthzRequest, class, reason string)
}

// AuthzRequest is one governed MCP request, ready to become a Nomos action.
type AuthzRequest struct {
	Identity Identity
	// ActionType is one of mcp.call, mcp.resource_read, mcp.prompt_get,
	// mcp.completion, mcp.sample or mcp.elicit.
	ActionType string
	// Resource is mcp://<server>/<tool>, mcp://<server>/resource/<uri>,
	// mcp://<server>/prompt/<name>, mcp://<server>/completion/<ref>,
	// mcp://<server>/sample or mcp://<server>/elicit.
	Resource string
	// Params is canonical JSON. For mcp.call: {upstream_server,
	// upstream_tool, tool_arguments, tool_arguments_hash}.
	Params json.RawMessage
	// ApprovalID is the approval_id argument of a retried tools/call.
	ApprovalID string
	// Metadata carries downstream_transport, downstream_session_id,
	// upstream_server and upstream_tool (or upstream_method).
	Metadata map[string]string
}

// AuthzResult is the Governor's decision and its output obligations.
type AuthzResult struct {
	// Decision is ALLOW, DENY or REQUIRE_APPROVAL.
	Decision            string
	Reason              string
	ApprovalID          string
	ApprovalFingerprint string
	ApprovalExpiresAt   time.Time
	// Redact, when set, is applied to every string the upstream returns.
	Redact func(string) string
	// OutputMaxBytes and OutputMaxLines cap the text returned; 0 = no cap.
	OutputMaxBytes int64
	OutputMaxLines int64
	// Handle is the Governor's own state for this request; the gateway
	// hands it back unchanged to Completed.
	Handle any
}

// Outcome is what happened to an allowed request.
type Outcome struct {
	// Classification is SUCCESS, TOOL_ERROR, UPSTREAM_ERROR or one of the
	// error classes below.
	Classification string
	Duration       time.Duration
	// ErrorClass is transport, protocol, timeout, canceled, breaker_open,
	// validation or empty.
	ErrorClass string
}

// Authenticator identifies the caller of a downstream HTTP request. body is
// the already read (capped) request body, empty for GET and DELETE. An error
// is answered with HTTP 401 {"decision":"DENY","reason":"auth_error: ..."}.
type Authenticator func(r *http.Request, body []byte) (Identity, error)
