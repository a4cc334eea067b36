package mcpbuiltins

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// Result is a tools/call result.
type Result struct {
	Content []TextContent     `json:"content"`
	IsError bool              `json:"isError,omitempty"`
	Meta    map[string]string `json:"_meta,omitempty"`
}

// TextContent is one text block of a Result.
type TextContent struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func textResult(text string, isError bool, meta map[string]string) Result {
	return Result{Content: []TextContent{{Type: "text", Text: text}}, IsError: isError, Meta: meta}
}

// Caller is who calls a built-in tool and through which door: the
// identity bound to the action, the trace the door groups its actions
// under, and the transport evidence recorded on every event.
type Caller struct {
	Identity action.Identity
	TraceID  string
	Meta     map[string]any
}

// Run turns one built-in tool call into an action, runs it through the
// pipeline and shapes the answer for the model. A call refused before the
// pipeline is recorded too, with the caller's transport evidence. ok is
// false when name is not a built-in tool.
func (s *Set) Run(ctx context.Context, name string, raw json.RawMessage, c Caller) (Result, bool) {
	b := s.builtin(name)
	if b == nil {
		return Result{}, false
	}
	if b.actionType == "" {
		return s.capabilities(c.Identity), true
	}
	env, err := envelope(b, raw, c.TraceID)
	if err != nil {
		reason := "Invalid arguments: " + err.Error()
		s.cfg.Processor.Reject(context.WithoutCancel(ctx), env, c.Identity, c.Meta, audit.ResultValidationError, reason)
		return textResult(reason+". Nothing was done.", true, map[string]string{"nomos/decision": policy.Deny}), true
	}
	body, err := json.Marshal(env)
	if err != nil {
		return textResult("Nomos decision: DENY (internal_error). Nothing was done.", true, map[string]string{"nomos/decision": policy.Deny}), true
	}
	resp, err := s.cfg.Processor.ProcessWith(ctx, body, c.Identity, c.Meta)
	if err != nil {
		se := service.AsError(err)
		return textResult(mcp.DenialText(mcp.AuthzResult{Decision: policy.Deny, Reason: se.Code + ": " + se.Msg}), true,
			map[string]string{"nomos/decision": policy.Deny}), true
	}
	return responseResult(resp), true
}

// envelope builds the action of a built-in call; a retry's approval id
// goes to context.extensions.approval, as for every other front door. On
// an error the envelope still names the action type, for the audit.
func envelope(b *builtin, raw json.RawMessage, traceID string) (*action.Envelope, error) {
	env := action.NewEnvelope(b.actionType, "", nil, traceID)
	args, approvalID, err := decodeArgs(raw, schemaKeys(b.tool.RawInputSchema)...)
	if err != nil {
		return env, err
	}
	resource, params, err := b.toAction(args)
	if err != nil {
		return env, err
	}
	p, err := json.Marshal(params)
	if err != nil {
		return env, err
	}
	env.Resource, env.Params = resource, p
	return env.WithApproval(approvalID), nil
}

// schemaKeys are the property names of a tool's input schema.
func schemaKeys(schema json.RawMessage) []string {
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	_ = json.Unmarshal(schema, &s)
	keys := make([]string, 0, len(s.Properties))
	for k := range s.Properties {
		if k != approvalArgument {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// responseResult is the text the model reads. DENY and REQUIRE_APPROVAL
// are tool errors with the one denial text of every MCP door; so is a
// command that exited non-zero.
func responseResult(r *service.Response) Result {
	meta := map[string]string{"nomos/decision": r.Decision, "nomos/action_id": r.ActionID, "nomos/trace_id": r.TraceID}
	if r.Decision == policy.Allow {
		text, failed := allowedText(r)
		return textResult(text, failed, meta)
	}
	res := mcp.AuthzResult{Decision: r.Decision, Reason: r.Reason, ApprovalID: r.ApprovalID}
	if r.Decision == policy.RequireApproval {
		meta["nomos/approval_id"] = r.ApprovalID
		res.ApprovalExpiresAt, _ = time.Parse(time.RFC3339, r.ApprovalExpiresAt)
	}
	return textResult(mcp.DenialText(res), true, meta)
}

// allowedText renders an executed action: the output, or stdout, stderr
// and the exit code of a command, or the status and body of a request.
func allowedText(r *service.Response) (string, bool) {
	var b strings.Builder
	failed := false
	switch {
	case r.ExitCode != nil:
		fmt.Fprintf(&b, "exit code: %d\n", *r.ExitCode)
		failed = *r.ExitCode != 0
		section(&b, "stdout", r.Stdout)
		section(&b, "stderr", r.Stderr)
	case r.StatusCode != 0:
		fmt.Fprintf(&b, "HTTP status: %d\n\n%s", r.StatusCode, r.Output)
	default:
		b.WriteString(r.Output)
	}
	if r.Truncated {
		b.WriteString("\n[output truncated by Nomos]")
	}
	if b.Len() == 0 {
		b.WriteString("Nomos decision: ALLOW. Done (no output).")
	}
	return b.String(), failed
}

func section(b *strings.Builder, name, text string) {
	if text == "" {
		return
	}
	fmt.Fprintf(b, "--- %s ---\n%s", name, text)
	if !strings.HasSuffix(text, "\n") {
		b.WriteString("\n")
	}
}

// capabilities answers nomos_capabilities; it is not an action and is
// not audited.
func (s *Set) capabilities(id action.Identity) Result {
	caps := map[string]any{}
	if s.cfg.Capabilities != nil {
		caps = s.cfg.Capabilities()
	}
	caps["identity"] = map[string]string{"principal": id.Principal, "agent": id.Agent}
	var tools []map[string]any
	for i := range s.tools {
		t := &s.tools[i]
		entry := map[string]any{"name": t.tool.Name, "usable": s.usable(t)}
		if t.actionType != "" {
			entry["action_type"] = t.actionType
		}
		if !s.usable(t) {
			entry["why_not"] = "the executor does not run " + t.actionType + " here (every call is denied as unsupported_action)"
		}
		tools = append(tools, entry)
	}
	caps["builtin_tools"] = tools
	caps["upstream_tools_relayed"] = s.cfg.UpstreamsRelayed
	b, err := json.MarshalIndent(caps, "", "  ")
	if err != nil {
		return textResult("capabilities: "+err.Error(), true, nil)
	}
	return textResult(string(b), false, nil)
}
