package action

import (
	"encoding/json"
	"strings"

	"github.com/caddy-nomos/nomos/internal/ids"
)

// NewActionID returns a fresh action id: "act-" and a time-ordered id
// (32 hex characters: the millisecond it was made, then 80 random bits;
// see internal/ids). Generated ids are also trace ids, and both are
// indexed in the sqlite audit file.
func NewActionID() string {
	return "act-" + ids.New()
}

// NewEnvelope builds the v1 envelope a front door sends through the
// pipeline on the caller's behalf. traceID groups the actions of one
// session; empty means a fresh id.
func NewEnvelope(actionType, resource string, params json.RawMessage, traceID string) *Envelope {
	id := NewActionID()
	if traceID == "" {
		traceID = id
	}
	return &Envelope{
		SchemaVersion: SchemaVersion, ActionID: id, TraceID: traceID,
		ActionType: actionType, Resource: resource, Params: params,
	}
}

// WithApproval presents the granted approval approvalID in the envelope's
// context.extensions.approval, as every front door does on a retry. An
// empty id leaves the envelope unchanged.
func (e *Envelope) WithApproval(approvalID string) *Envelope {
	if approvalID == "" {
		return e
	}
	ext, _ := json.Marshal(map[string]string{"approval_id": approvalID})
	if e.Context.Extensions == nil {
		e.Context.Extensions = map[string]json.RawMessage{}
	}
	e.Context.Extensions["approval"] = ext
	return e
}

// WithToolDefinition binds an mcp.call envelope to the fingerprint of
// the upstream tool definition it calls: New records it on the action
// (BindToolDefinition), so rules can require it (tool_fingerprints) and an
// approval covers only that definition. Only a gateway calls it; a decoded
// envelope never carries it. An empty fingerprint binds none (it clears
// one set before).
func (e *Envelope) WithToolDefinition(toolFingerprint string) *Envelope {
	e.toolFingerprint = toolFingerprint
	return e
}

// MCPResource is the resource of an MCP request on upstream server:
// mcp://<server>/<path...>, the server name lower-cased.
func MCPResource(server string, path ...string) string {
	return "mcp://" + strings.ToLower(server) + "/" + strings.Join(path, "/")
}
