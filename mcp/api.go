package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// Identity is the authenticated caller of one downstream request.
type Identity struct {
	Principal string
	Agent     string
}

// Downstream transports: how a client reached a front door. The label is
// recorded as downstream_transport in every audit event of the request.
const (
	DownstreamStreamableHTTP = TransportStreamableHTTP
	DownstreamStdio          = TransportStdio
)

// approvalArgumentName is the tools/call argument that carries the id of
// a granted approval on a retry; it is never forwarded.
const approvalArgumentName = "approval_id"

// Governor runs the Nomos pipeline for governed MCP requests. Every front
// door reaches it through a Path, never directly.
type Governor interface {
	// Authorize runs the Nomos pipeline (rate limits, policy, approvals,
	// decision audit) for one governed MCP request. An error is an internal
	// failure: the door fails closed.
	Authorize(ctx context.Context, req AuthzRequest) (AuthzResult, error)
	// Completed records the outcome (audit action.completed and trace.end)
	// of an authorized request, denied ones included (then out is empty).
	// It runs before the answer is sent on, so it must not block for long.
	Completed(ctx context.Context, req AuthzRequest, res AuthzResult, out Outcome)
	// Rejected records a request the door refused before asking for a
	// decision: an unknown or hidden name, arguments that fail the tool's
	// schema, an upstream that is unavailable. class is an audit result
	// classification, reason what the client was told.
	Rejected(ctx context.Context, req AuthzRequest, class, reason string)
	// Visible reports whether some rule could ALLOW or REQUIRE_APPROVAL
	// req (its identity, action type, resource and tool fingerprint,
	// whatever its params). It decides what lists show and whether a name
	// exists at all for the caller. It must not audit a decision and must
	// not over-report: when unsure, answer false.
	Visible(ctx context.Context, req AuthzRequest) bool
}

// ListObserver may be implemented by a Governor to audit discovery (the
// mcp.tools_list event): after each tools/list it learns which tools were
// shown and which were hidden, as "<server>/<tool>" names.
type ListObserver interface {
	ToolsListed(ctx context.Context, id Identity, metadata map[string]string, shown, hidden []string)
}

// AuthzRequest is one governed MCP request, ready to become a Nomos action.
type AuthzRequest struct {
	Identity Identity
	// ActionType is one of the action.TypeMCP* types.
	ActionType string
	// Resource is mcp://<server>/<tool>, mcp://<server>/resource/<uri>,
	// mcp://<server>/prompt/<name>, mcp://<server>/completion/<ref>,
	// mcp://<server>/sample or mcp://<server>/elicit (see MCPResource).
	Resource string
	// Params is canonical JSON. For mcp.call: {upstream_server,
	// upstream_tool, tool_arguments, tool_arguments_hash}.
	Params json.RawMessage
	// ToolFingerprint is the fingerprint of the upstream tool definition
	// an mcp.call targets (see package internal/pins), the pinned one when
	// pinning is enforced. The Governor binds it to the action, so rules
	// can name it (tool_fingerprints) and an approval covers only this
	// definition. Empty for other requests.
	ToolFingerprint string
	// ApprovalID is the approval_id argument of a retried tools/call.
	ApprovalID string
	// TraceID groups the actions of one downstream session. Default: a
	// fresh id per action.
	TraceID string
	// Metadata carries downstream_transport (set by the Path),
	// downstream_session_id, upstream_server and upstream_tool (or
	// upstream_method).
	Metadata map[string]string
}

// WithToolFingerprint binds an mcp.call to the fingerprint of the tool
// definition it targets ("" binds none) and records it as evidence
// (metadata tool_fingerprint).
func (r AuthzRequest) WithToolFingerprint(fingerprint string) AuthzRequest {
	r.ToolFingerprint = fingerprint
	if fingerprint != "" {
		if r.Metadata == nil {
			r.Metadata = map[string]string{}
		}
		r.Metadata["tool_fingerprint"] = fingerprint
	}
	return r
}

// AuthzResult is the Governor's decision and its output obligations.
type AuthzResult struct {
	// Decision is ALLOW, DENY or REQUIRE_APPROVAL (policy.Allow, ...).
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
	// Handle is the Governor's own state for this request; the door hands
	// it back unchanged to Completed.
	Handle any
}

// Outcome is what happened to an allowed request.
type Outcome struct {
	// Classification is an audit result classification (audit.Result*);
	// empty for a request that was not forwarded.
	Classification string
	Duration       time.Duration
	// ErrorClass is transport, protocol, timeout, canceled, breaker_open,
	// rpc or empty.
	ErrorClass string
}

// Authenticator identifies the caller of a downstream HTTP request. body is
// the already read (capped) request body, empty for GET and DELETE. An error
// is answered with HTTP 401 {"decision":"DENY","reason":"auth_error: <its
// message>"}, so its message must not carry the code itself.
//
// An error wrapping ErrStateUnavailable (the shared state that checks
// signature replays is down) is answered with HTTP 503 state_unavailable.
type Authenticator func(r *http.Request, body []byte) (Identity, error)

// Builtins are tools a door answers itself, listed ahead of the upstreams'
// tools: the built-in nomos_* tools (internal/mcpbuiltins). They run
// through their own governed pipeline; the gateway only lists them and
// dispatches their calls with the session's identity.
type Builtins interface {
	// ToolDefinitions are the tool objects to list.
	ToolDefinitions() []json.RawMessage
	// Has reports whether name is a built-in tool, listed or not; an
	// upstream tool of that name is never shown.
	Has(name string) bool
	// CallTool runs call.Name; ok is false when it is not a built-in tool.
	CallTool(ctx context.Context, call BuiltinCall) (result any, ok bool)
}

// BuiltinCall is one tools/call a gateway hands to its Builtins.
type BuiltinCall struct {
	Identity  Identity
	SessionID string
	// Transport is the downstream transport label (streamable_http).
	Transport string
	Name      string
	Arguments json.RawMessage
}

// ErrStateUnavailable marks an Authenticator failure caused by shared
// state that could not be reached rather than by the credentials.
var ErrStateUnavailable = errors.New("shared state unavailable")
