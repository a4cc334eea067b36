package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// ReasonInternal is the reason of a request denied because the Governor
// failed: the door fails closed.
const ReasonInternal = "internal_error"

// Path is the one governed-call path of every MCP front door (nomos_mcp,
// nomos mcp stdio, and any door added later): it labels each request with
// the door's downstream transport, then either records a refusal, or runs
// authorize → DENY/REQUIRE_APPROVAL result or forward → complete. A door
// calls it; it never repeats the sequence.
type Path struct {
	// Governor decides, records and completes. Required.
	Governor Governor
	// Transport is the downstream transport recorded in audit:
	// streamable_http or stdio. Default: streamable_http.
	Transport string
	// Log receives what clients are not told. Default: slog.Default().
	Log *slog.Logger
	// Now is the clock that times forwarded requests. Default: time.Now.
	Now func() time.Time
}

// NewPath returns a Path with its defaults filled.
func NewPath(gov Governor, transport string, log *slog.Logger) *Path {
	if transport == "" {
		transport = DownstreamStreamableHTTP
	}
	if log == nil {
		log = slog.Default()
	}
	return &Path{Governor: gov, Transport: transport, Log: log, Now: time.Now}
}

// label stamps the downstream transport on a copy of req's metadata.
func (p *Path) label(req AuthzRequest) AuthzRequest {
	meta := make(map[string]string, len(req.Metadata)+1)
	maps.Copy(meta, req.Metadata)
	meta["downstream_transport"] = p.Transport
	req.Metadata = meta
	return req
}

// Visible reports whether req's name exists for its caller. A hidden name
// must be refused exactly like an unknown one, before anything about it
// (its schema, its upstream) is consulted.
func (p *Path) Visible(ctx context.Context, req AuthzRequest) bool {
	return p.Governor.Visible(ctx, req)
}

// VisibleItems keeps the listed items (objects) whose request, built from
// the item's member field, is visible to the caller: a list never shows
// what the caller could not use. It also returns the names shown and
// hidden; an item without a string field is dropped as hidden.
func (p *Path) VisibleItems(ctx context.Context, items []json.RawMessage, field string, request func(name string, item map[string]json.RawMessage) AuthzRequest) (kept []json.RawMessage, shown, hidden []string) {
	kept = items[:0:0]
	for _, it := range items {
		var obj map[string]json.RawMessage
		var name string
		if json.Unmarshal(it, &obj) != nil || json.Unmarshal(obj[field], &name) != nil || !PrintableName(name) {
			hidden = append(hidden, name)
			continue
		}
		if !p.Visible(ctx, request(name, obj)) {
			hidden = append(hidden, name)
			continue
		}
		kept, shown = append(kept, it), append(shown, name)
	}
	return kept, shown, hidden
}

// Listed records a tools/list (when the Governor is a ListObserver): the
// "<server>/<tool>" names shown and hidden, with the door's evidence.
func (p *Path) Listed(ctx context.Context, id Identity, metadata map[string]string, shown, hidden []string) {
	if obs, ok := p.Governor.(ListObserver); ok {
		obs.ToolsListed(context.WithoutCancel(ctx), id, p.label(AuthzRequest{Metadata: metadata}).Metadata, shown, hidden)
	}
}

// Refuse records a request refused before policy; the caller answers the
// client with reason.
func (p *Path) Refuse(ctx context.Context, req AuthzRequest, class, reason string) {
	p.Governor.Rejected(context.WithoutCancel(ctx), p.label(req), class, reason)
}

// Run authorizes req and, only on ALLOW, calls forward, which carries the
// request out and says how it ended. A request that is not forwarded is
// still completed, so its trace ends as it does on the HTTP API. ok
// reports whether forward ran; when it did not, DenialText(res) is the
// answer for the model.
func (p *Path) Run(ctx context.Context, req AuthzRequest, forward func(AuthzResult) Outcome) (res AuthzResult, ok bool) {
	req = p.label(req)
	res, err := p.Governor.Authorize(ctx, req)
	if err != nil {
		p.Log.Error("mcp governor failed; denying", "action_type", req.ActionType, "error", err)
		return AuthzResult{Decision: policy.Deny, Reason: ReasonInternal}, false
	}
	done := context.WithoutCancel(ctx)
	if res.Decision != policy.Allow {
		p.Governor.Completed(done, req, res, Outcome{})
		return res, false
	}
	start := p.Now()
	out := forward(res)
	out.Duration = p.Now().Sub(start)
	p.Governor.Completed(done, req, res, out)
	return res, true
}

// NewRequest builds a governed request of id on upstream server (empty
// when no upstream owns the name): resource mcp://<server>/<path...>,
// params the canonical JSON of params plus upstream_server. A door adds
// its TraceID, ApprovalID and Metadata.
func NewRequest(id Identity, actionType, server string, path []string, params map[string]any) AuthzRequest {
	p := make(map[string]any, len(params)+1)
	maps.Copy(p, params)
	p["upstream_server"] = server
	canon, err := action.CanonicalMarshal(p)
	if err != nil { // only JSON values reach here; fail visibly
		canon = json.RawMessage(`{"error":"params not canonicalizable"}`)
	}
	return AuthzRequest{Identity: id, ActionType: actionType, Resource: action.MCPResource(server, path...), Params: canon}
}

// NewCallRequest builds the mcp.call of tool on upstream server: params
// {upstream_server, upstream_tool, tool_arguments, tool_arguments_hash},
// the arguments canonicalized (approval_id already removed), so an
// approval binds to the same fingerprint whichever door asks.
func NewCallRequest(id Identity, server, tool string, args json.RawMessage) (AuthzRequest, error) {
	canon, err := action.Canonicalize(args)
	if err != nil {
		return AuthzRequest{}, fmt.Errorf("arguments: %w", err)
	}
	return NewRequest(id, action.TypeMCPCall, server, []string{tool}, map[string]any{
		"upstream_tool": tool, "tool_arguments": json.RawMessage(canon), "tool_arguments_hash": action.SHA256Hex(canon),
	}), nil
}

// DenialText is the one text a model reads when a request was not carried
// out: the decision and reason and, for an approval, how to retry.
func DenialText(res AuthzResult) string {
	reason := res.Reason
	if reason == "" {
		reason = "denied by policy"
	}
	if res.Decision != policy.RequireApproval {
		return fmt.Sprintf("Nomos decision: DENY (%s). Nothing was done.", reason)
	}
	text := fmt.Sprintf("Nomos decision: REQUIRE_APPROVAL (%s). approval_id: %s.", reason, res.ApprovalID)
	if !res.ApprovalExpiresAt.IsZero() {
		text += " The approval expires at " + res.ApprovalExpiresAt.UTC().Format(time.RFC3339) + "."
	}
	return text + " Nothing was done. Once a human approves it (nomos approvals approve " + res.ApprovalID +
		"), call the same tool again with the same arguments plus the argument " + approvalArgumentName + " set to this id."
}

// PrintableName reports whether an upstream-chosen name (a tool, prompt or
// resource) can be shown to a human as it is: no control or format
// characters (zero-width, bidirectional overrides) and no line
// separators, which would make "refund\u200b" look like "refund" in a
// review. Such names are never listed nor callable.
func PrintableName(name string) bool {
	return name != "" && !strings.ContainsFunc(name, action.Invisible)
}
