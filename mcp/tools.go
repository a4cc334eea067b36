package mcp

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/jsonrpc"
	"github.com/caddy-nomos/nomos/policy"
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
	tools := g.builtinTools()
	var shown, hidden []string
	for _, r := range refs {
		if g.isBuiltin(r.exposed) {
			g.log.Warn("mcp upstream tool hidden by a built-in tool of the same name", "tool", r.exposed, "upstream_server", r.up.cfg.Name)
			continue
		}
		qualified := r.up.cfg.Name + "/" + r.def.name
		if !g.path.Visible(ctx, g.toolRequest(s, r, nil, "")) {
			hidden = append(hidden, qualified)
			continue
		}
		shown = append(shown, qualified)
		tools = append(tools, exposedTool(r))
	}
	g.path.Listed(ctx, s.identity, g.metadata(s, "", "", ""), shown, hidden)
	return jsonrpc.Result(m.ID, map[string]any{"tools": tools})
}

// builtinTools are the built-in tool objects, listed first.
func (g *Gateway) builtinTools() []json.RawMessage {
	if g.builtins == nil {
		return []json.RawMessage{}
	}
	return g.builtins.ToolDefinitions()
}

// isBuiltin reports whether name is a built-in tool; an upstream tool of
// the same name is not shown (calls reach the built-in).
func (g *Gateway) isBuiltin(name string) bool {
	return g.builtins != nil && g.builtins.Has(name)
}

func (g *Gateway) listError(m *message, err error) []byte {
	if rerr, ok := err.(*rpcError); ok {
		return g.upstreamRPCErrorFor(m.ID, "", rerr, nil)
	}
	class, errClass := classify(err)
	g.log.Warn("mcp list failed", "error_class", errClass, "error", err)
	return jsonrpc.ErrorResponse(m.ID, rpcCodeFor(class), class+": an upstream did not answer", nil)
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

// callTool governs and forwards tools/call. Whether the tool exists for
// the caller is decided first: a tool hidden by policy answers exactly as
// an unknown one, before its schema or arguments are looked at.
func (g *Gateway) callTool(ctx context.Context, s *session, m *message, related *responder) []byte {
	var p callParams
	if json.Unmarshal(m.Params, &p) != nil || p.Name == "" {
		const reason = "tools/call needs a tool name"
		g.path.Refuse(ctx, g.request(s, nil, action.TypeMCPCall, []string{p.Name}, nil, "upstream_tool", p.Name), audit.ResultValidationError, reason)
		return jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeInvalidParams, reason, nil)
	}
	if g.builtins != nil {
		call := BuiltinCall{Identity: s.identity, SessionID: s.id, Transport: g.path.Transport, Name: p.Name, Arguments: p.Arguments}
		if res, ok := g.builtins.CallTool(ctx, call); ok {
			return jsonrpc.Result(m.ID, res)
		}
	}
	ref, ok, err := g.resolveTool(ctx, s, p.Name)
	if err != nil {
		u, _, _ := g.resolveNamed(p.Name)
		class, text := classOf(err), g.upstreamFailureText(u, err)
		g.path.Refuse(ctx, g.unknownTool(s, p.Name), class, text)
		return toolErrorResult(m.ID, class, text)
	}
	if !ok || !g.path.Visible(ctx, g.toolRequest(s, ref, nil, "")) {
		reason := UnknownReason("tool", p.Name)
		req := g.unknownTool(s, p.Name)
		if ref.quarantined { // the client is told nothing more; the operator is
			req.Metadata["tool_quarantined"], req.Metadata["tool_fingerprint"] = "true", ref.def.fingerprint
		}
		g.path.Refuse(ctx, req, audit.ResultValidationError, reason)
		return UnknownError(m.ID, reason)
	}
	args, approvalID, err := splitApproval(p.Arguments)
	if err == nil {
		err = validateArguments(ref.def, args, ref.up.cfg.AllowMissingToolSchemas)
	}
	var req AuthzRequest
	if err == nil {
		req, err = g.callRequest(s, ref, args, approvalID)
	}
	if err != nil {
		reason := audit.ResultValidationError + ": " + err.Error()
		g.path.Refuse(ctx, g.toolRequest(s, ref, nil, approvalID), audit.ResultValidationError, reason)
		return toolErrorResult(m.ID, audit.ResultValidationError, reason)
	}
	return g.governedCall(ctx, s, m, related, ref, req, args)
}

// unknownTool is the request recorded for a tool name that does not
// exist for the caller, on the upstream its prefix points to.
func (g *Gateway) unknownTool(s *session, name string) AuthzRequest {
	u, upName, _ := g.resolveNamed(name)
	return g.request(s, u, action.TypeMCPCall, []string{upName}, nil, "upstream_tool", upName)
}

// toolRequest is the mcp.call of ref without its arguments: what
// visibility and pre-policy refusals are decided and recorded on.
func (g *Gateway) toolRequest(s *session, ref toolRef, params map[string]any, approvalID string) AuthzRequest {
	req := g.request(s, ref.up, action.TypeMCPCall, []string{ref.def.name}, params, "upstream_tool", ref.def.name)
	req.ApprovalID = approvalID
	return withToolDefinition(req, ref.def)
}

func classOf(err error) string {
	class, _ := classify(err)
	return class
}

// upstreamFailureText names the class and the upstream only: addresses
// and upstream internals go to the log, never to the client.
func (g *Gateway) upstreamFailureText(u *Upstream, err error) string {
	class, errClass := classify(err)
	name := "?"
	if u != nil {
		name = u.cfg.Name
	}
	g.log.Warn("mcp upstream request failed", "upstream_server", name, "error_class", errClass, "error", err)
	return UpstreamFailureText(class, name)
}

// UpstreamFailureText is what a client reads when upstream server could
// not carry out a request, by result classification: the class and the
// server's name only, never addresses or upstream internals.
func UpstreamFailureText(class, server string) string {
	switch class {
	case audit.ResultUpstreamTimeout:
		return fmt.Sprintf("%s: upstream %q did not answer in time.", class, server)
	case audit.ResultUpstreamCanceled:
		return fmt.Sprintf("%s: the request was canceled.", class)
	}
	return fmt.Sprintf("%s: upstream %q is unavailable; retry later.", class, server)
}

// UpstreamFailure answers a request upstream server could not carry out:
// a tool error result for tools/call, a JSON-RPC error otherwise.
func UpstreamFailure(id json.RawMessage, method, class, server string) []byte {
	if method == "tools/call" {
		return toolErrorResult(id, class, UpstreamFailureText(class, server))
	}
	return jsonrpc.ErrorResponse(id, rpcCodeFor(class), class+": upstream "+server+" did not answer", map[string]string{"error_class": class})
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
	req, err := NewCallRequest(s.identity, ref.up.cfg.Name, ref.def.name, args)
	if err != nil {
		return AuthzRequest{}, err
	}
	return withToolDefinition(g.inSession(s, req, ref.up.cfg.Name, "upstream_tool", ref.def.name, approvalID), ref.def), nil
}

// withToolDefinition binds req to the definition it targets, and records
// its fingerprint as evidence (tool_fingerprint) in every audit event.
func withToolDefinition(req AuthzRequest, d *toolDef) AuthzRequest {
	return req.WithToolFingerprint(d.fingerprint)
}

// request builds the governed request of session s on upstream u (nil
// when no upstream owns the name).
func (g *Gateway) request(s *session, u *Upstream, actionType string, path []string, params map[string]any, metaKey, metaValue string) AuthzRequest {
	server := ""
	if u != nil {
		server = u.cfg.Name
	}
	return g.inSession(s, NewRequest(s.identity, actionType, server, path, params), server, metaKey, metaValue, "")
}

// inSession adds the session's trace and evidence to req.
func (g *Gateway) inSession(s *session, req AuthzRequest, server, metaKey, metaValue, approvalID string) AuthzRequest {
	req.TraceID = "mcp-" + s.id
	req.ApprovalID = approvalID
	req.Metadata = g.metadata(s, server, metaKey, metaValue)
	return req
}

func (g *Gateway) metadata(s *session, server, key, value string) map[string]string {
	m := map[string]string{"downstream_session_id": s.id}
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

// governedCall runs the governed-call path for a tool call and shapes the
// result: a refusal is a tool error the model can read.
func (g *Gateway) governedCall(ctx context.Context, s *session, m *message, related *responder, ref toolRef, req AuthzRequest, args json.RawMessage) []byte {
	params, err := forwardCallParams(m.Params, ref.def.name, args)
	if err != nil {
		return jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeInvalidParams, "tools/call params must be an object", nil)
	}
	var out []byte
	res, ok := g.path.Run(ctx, req, func(res AuthzResult) Outcome {
		result, rerr, err := g.forward(ctx, s, ref.up, m, params, related, res.Redact)
		var outcome Outcome
		out, outcome = g.callOutcome(m.ID, ref.up, result, rerr, err, res)
		return outcome
	})
	if !ok {
		return toolErrorResult(m.ID, deniedClass(res), DenialText(res))
	}
	return out
}

// deniedClass is the result classification a client sees for a request
// that was not forwarded.
func deniedClass(res AuthzResult) string {
	if res.Decision == policy.RequireApproval {
		return audit.ResultRequireApproval
	}
	return audit.ResultDeniedPolicy
}

func (g *Gateway) callOutcome(id json.RawMessage, u *Upstream, result json.RawMessage, rerr *rpcError, err error, res AuthzResult) ([]byte, Outcome) {
	switch {
	case err != nil:
		class, errClass := classify(err)
		return toolErrorResult(id, class, g.upstreamFailureText(u, err)), Outcome{Classification: class, ErrorClass: errClass}
	case rerr != nil:
		return g.upstreamRPCErrorFor(id, u.cfg.Name, rerr, res.Redact), Outcome{Classification: audit.ResultUpstreamError, ErrorClass: "rpc"}
	}
	shaped, isErr := shapeOutput(result, res, "content")
	class := audit.ResultSuccess
	if isErr {
		class = audit.ResultToolError
	}
	return jsonrpc.Result(id, shaped), Outcome{Classification: class}
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
	return jsonrpc.Result(id, map[string]any{
		"content": []map[string]string{{"type": "text", "text": text}},
		"isError": true,
		"_meta":   map[string]string{"nomos/result_classification": class},
	})
}
