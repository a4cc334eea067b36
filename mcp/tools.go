package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/policy/action"
)

// maxArgumentBytes bounds the tool arguments validated and governed.
const maxArgumentBytes = 512 << 10

// listTools answers tools/list with the tools the principal could call.
func (g *Gateway) listTools(ctx context.Context, s *session, m *message) []byte {
	refs, err := g.toolView(ctx, s)
	if err != nil {
		return g.listError(m, err)
	}
	tools := make([]json.RawMessage, 0, len(refs))
	var shown, hidden []string
	for _, r := range refs {
		qualified := r.up.cfg.Name + "/" + r.def.name
		if !g.gov.Visible(ctx, s.identity, r.up.cfg.Name, r.def.name) {
			hidden = append(hidden, qualified)
			continue
		}
		shown = append(shown, qualified)
		tools = append(tools, exposedTool(r))
	}
	if obs, ok := g.gov.(ListObserver); ok {
		obs.ToolsListed(ctx, s.identity, g.metadata(s, "", "", ""), shown, hidden)
	}
	return encodeResult(m.ID, map[string]any{"tools": tools})
}

func (g *Gateway) listError(m *message, err error) []byte {
	if rerr, ok := err.(*rpcError); ok {
		return encodeRawError(m.ID, rerr)
	}
	class, errClass := classify(err)
	g.log.Warn("mcp list failed", "error_class", errClass, "error", err)
	return encodeError(m.ID, rpcCodeFor(class), class+": an upstream did not answer", nil)
}

// exposedTool is the upstream tool object under its exposed name.
func exposedTool(r toolRef) json.RawMessage {
	if r.exposed == r.def.name {
		b, _ := json.Marshal(r.def.raw)
		return b
	}
	obj := make(map[string]json.RawMessage, len(r.def.raw))
	for k, v := range r.def.raw {
		obj[k] = v
	}
	obj["name"], _ = json.Marshal(r.exposed)
	b, _ := json.Marshal(obj)
	return b
}

// callParams are the tools/call params the gateway reads; the rest of the
// params (e.g. _meta) is forwarded unchanged.
type callParams struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// callTool governs and forwards tools/call.
func (g *Gateway) callTool(ctx context.Context, s *session, m *message, related *responder) []byte {
	var p callParams
	if json.Unmarshal(m.Params, &p) != nil || p.Name == "" {
		return encodeError(m.ID, codeInvalidParams, "tools/call needs a tool name", nil)
	}
	ref, ok, err := g.resolveTool(ctx, s, p.Name)
	if err != nil {
		u, _, _ := g.resolveNamed(p.Name)
		return toolErrorResult(m.ID, classOf(err), g.upstreamFailureText(u, err))
	}
	if !ok {
		return encodeError(m.ID, codeInvalidParams, "unknown tool: "+p.Name, nil)
	}
	args, approvalID, err := splitApproval(p.Arguments)
	if err != nil {
		return toolErrorResult(m.ID, ClassArgumentValidation, ClassArgumentValidation+": "+err.Error())
	}
	if err := validateArguments(ref.def, args, ref.up.cfg.AllowMissingToolSchemas); err != nil {
		reason := ClassArgumentValidation + ": " + err.Error()
		g.recordRejection(ctx, s, ref, args, approvalID, reason)
		return toolErrorResult(m.ID, ClassArgumentValidation, reason)
	}
	req, err := g.callRequest(s, ref, args, approvalID)
	if err != nil {
		return toolErrorResult(m.ID, ClassArgumentValidation, ClassArgumentValidation+": "+err.Error())
	}
	return g.governedCall(ctx, s, m, related, ref, req, args)
}

// recordRejection lets a governor that audits rejections record a call
// refused before policy, so no refusal goes unrecorded.
func (g *Gateway) recordRejection(ctx context.Context, s *session, ref toolRef, args json.RawMessage, approvalID, reason string) {
	rr, ok := g.gov.(RejectionRecorder)
	if !ok {
		return
	}
	req, err := g.callRequest(s, ref, args, approvalID)
	if err != nil {
		return
	}
	rr.Rejected(context.WithoutCancel(ctx), req, ClassArgumentValidation, reason)
}

func classOf(err error) string {
	class, _ := classify(err)
	return class
}

func (g *Gateway) upstreamFailureText(u *Upstream, err error) string {
	class, errClass := classify(err)
	name := "?"
	if u != nil {
		name = u.cfg.Name
	}
	g.log.Warn("mcp upstream request failed", "upstream_server", name, "error_class", errClass, "error", err)
	switch class {
	case ClassUpstreamTimeout:
		return fmt.Sprintf("%s: upstream %q did not answer in time.", class, name)
	case ClassUpstreamCanceled:
		return fmt.Sprintf("%s: the request was canceled.", class)
	}
	return fmt.Sprintf("%s: upstream %q is unavailable; retry later.", class, name)
}

// splitApproval removes the approval_id argument (never forwarded).
func splitApproval(raw json.RawMessage) (json.RawMessage, string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage("{}"), "", nil
	}
	if len(raw) > maxArgumentBytes {
		return nil, "", fmt.Errorf("arguments exceed %d bytes", maxArgumentBytes)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, "", fmt.Errorf("arguments must be a JSON object")
	}
	rawID, ok := obj[approvalArgumentName]
	if !ok {
		return raw, "", nil
	}
	var id string
	if json.Unmarshal(rawID, &id) != nil {
		return nil, "", fmt.Errorf("%s must be a string", approvalArgumentName)
	}
	delete(obj, approvalArgumentName)
	out, _ := json.Marshal(obj)
	return out, id, nil
}

// callRequest builds the mcp.call action of a tool call.
func (g *Gateway) callRequest(s *session, ref toolRef, args json.RawMessage, approvalID string) (AuthzRequest, error) {
	canon, err := action.Canonicalize(args)
	if err != nil {
		return AuthzRequest{}, fmt.Errorf("arguments: %w", err)
	}
	server := ref.up.cfg.Name
	params, err := action.CanonicalMarshal(map[string]any{
		"upstream_server": server, "upstream_tool": ref.def.name,
		"tool_arguments": json.RawMessage(canon), "tool_arguments_hash": action.SHA256Hex(canon),
	})
	if err != nil {
		return AuthzRequest{}, fmt.Errorf("action params: %w", err)
	}
	return AuthzRequest{
		Identity: s.identity, ActionType: ActionCall,
		Resource:   "mcp://" + strings.ToLower(server) + "/" + ref.def.name,
		Params:     json.RawMessage(params),
		ApprovalID: approvalID,
		Metadata:   g.metadata(s, server, "upstream_tool", ref.def.name),
	}, nil
}

func (g *Gateway) metadata(s *session, server, key, value string) map[string]string {
	m := map[string]string{"downstream_transport": DownstreamTransport, "downstream_session_id": s.id}
	if server != "" {
		m["upstream_server"] = server
		if h := g.byName[server].envShapeHash(); h != "" {
			m["upstream_env_shape_hash"] = h
		}
	}
	if key != "" {
		m[key] = value
	}
	return m
}

// governedCall asks the governor, forwards an allowed call and shapes the
// result.
func (g *Gateway) governedCall(ctx context.Context, s *session, m *message, related *responder, ref toolRef, req AuthzRequest, args json.RawMessage) []byte {
	res, err := g.gov.Authorize(ctx, req)
	if err != nil {
		g.log.Error("mcp governor failed; denying", "error", err)
		return toolErrorResult(m.ID, ClassDenied, "Nomos decision: DENY (internal_error). The request was not forwarded.")
	}
	if res.Decision != DecisionAllow {
		return toolErrorResult(m.ID, ClassDenied, denialText(res))
	}
	params, err := forwardCallParams(m.Params, ref.def.name, args)
	if err != nil {
		return encodeError(m.ID, codeInvalidParams, err.Error(), nil)
	}
	start := g.now()
	result, rerr, err := g.forward(ctx, s, ref.up, m, params, related)
	out, outcome := g.callOutcome(m.ID, ref.up, result, rerr, err, res)
	outcome.Duration = g.now().Sub(start)
	g.gov.Completed(context.WithoutCancel(ctx), req, res, outcome)
	return out
}

func (g *Gateway) callOutcome(id json.RawMessage, u *Upstream, result json.RawMessage, rerr *rpcError, err error, res AuthzResult) ([]byte, Outcome) {
	switch {
	case err != nil:
		class, errClass := classify(err)
		return toolErrorResult(id, class, g.upstreamFailureText(u, err)), Outcome{Classification: class, ErrorClass: errClass}
	case rerr != nil:
		return encodeRawError(id, rerr), Outcome{Classification: ClassUpstreamError, ErrorClass: "rpc"}
	}
	shaped, isErr := shapeOutput(result, res, "content")
	class := ClassSuccess
	if isErr {
		class = ClassToolError
	}
	return encodeResult(id, shaped), Outcome{Classification: class}
}

// forwardCallParams rewrites name and arguments and keeps every other
// member (e.g. _meta) as the client sent it.
func forwardCallParams(raw json.RawMessage, tool string, args json.RawMessage) (json.RawMessage, error) {
	var p map[string]json.RawMessage
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("tools/call params: %w", err)
	}
	p["name"], _ = json.Marshal(tool)
	p["arguments"] = args
	return json.Marshal(p)
}

// toolErrorResult is a tool result with isError set and readable text.
func toolErrorResult(id json.RawMessage, class, text string) []byte {
	return encodeResult(id, map[string]any{
		"content": []map[string]string{{"type": "text", "text": text}},
		"isError": true,
		"_meta":   map[string]string{"nomos/result_classification": class},
	})
}

// denialText tells the model what was decided and, for approvals, how to
// retry.
func denialText(res AuthzResult) string {
	reason := res.Reason
	if reason == "" {
		reason = "denied by policy"
	}
	if res.Decision != DecisionRequireAppr {
		return fmt.Sprintf("Nomos decision: DENY (%s). The request was not forwarded.", reason)
	}
	text := fmt.Sprintf("Nomos decision: REQUIRE_APPROVAL (%s). approval_id: %s.", reason, res.ApprovalID)
	if !res.ApprovalExpiresAt.IsZero() {
		text += " The approval expires at " + res.ApprovalExpiresAt.UTC().Format(time.RFC3339) + "."
	}
	return text + " Once a human approves it, call the same tool again with the same arguments plus the argument " +
		approvalArgumentName + " set to this id."
}
