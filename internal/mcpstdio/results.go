package mcpstdio

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// toolResult is a tools/call result.
type toolResult struct {
	Content []textContent     `json:"content"`
	IsError bool              `json:"isError,omitempty"`
	Meta    map[string]string `json:"_meta,omitempty"`
}

type textContent struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func textResult(text string, isError bool, meta map[string]string) toolResult {
	return toolResult{Content: []textContent{{Type: "text", Text: text}}, IsError: isError, Meta: meta}
}

// runBuiltin turns one built-in tool call into an action, runs it through
// the pipeline and shapes the answer for the model.
func (s *Server) runBuiltin(ctx context.Context, b *builtin, raw json.RawMessage) toolResult {
	if b.actionType == "" {
		return s.capabilities()
	}
	args, approvalID, err := decodeArgs(raw, schemaKeys(b.tool.RawInputSchema)...)
	if err != nil {
		return textResult("Invalid arguments: "+err.Error()+". Nothing was done.", true, nil)
	}
	resource, params, err := b.toAction(args)
	if err != nil {
		return textResult("Invalid arguments: "+err.Error()+". Nothing was done.", true, nil)
	}
	body, err := s.envelope(b.actionType, resource, params, approvalID)
	if err != nil {
		return textResult("Invalid arguments: "+err.Error()+". Nothing was done.", true, nil)
	}
	resp, err := s.cfg.Processor.Process(ctx, body, s.cfg.Identity)
	if err != nil {
		se := service.AsError(err)
		return textResult(fmt.Sprintf("Nomos decision: DENY (%s: %s). Nothing was done.", se.Code, se.Msg), true,
			map[string]string{"nomos/decision": policy.Deny})
	}
	return responseResult(resp)
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

// envelope builds the v1 action envelope; a retry's approval id goes to
// context.extensions.approval, as for every other front door.
func (s *Server) envelope(actionType, resource string, params any, approvalID string) ([]byte, error) {
	p, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	ext := map[string]json.RawMessage{}
	if approvalID != "" {
		ext["approval"], _ = json.Marshal(map[string]string{"approval_id": approvalID})
	}
	return json.Marshal(action.Envelope{
		SchemaVersion: action.SchemaVersion, ActionID: "act-" + randomHex(12), TraceID: s.traceID,
		ActionType: actionType, Resource: resource, Params: p,
		Context: action.Context{Extensions: ext},
	})
}

// responseResult is the text the model reads. DENY and REQUIRE_APPROVAL
// are tool errors; so is a command that exited non-zero.
func responseResult(r *service.Response) toolResult {
	meta := map[string]string{"nomos/decision": r.Decision, "nomos/action_id": r.ActionID, "nomos/trace_id": r.TraceID}
	switch r.Decision {
	case policy.Allow:
		text, failed := allowedText(r)
		return textResult(text, failed, meta)
	case policy.RequireApproval:
		meta["nomos/approval_id"] = r.ApprovalID
		return textResult(approvalText(r), true, meta)
	}
	return textResult(fmt.Sprintf("Nomos decision: DENY (%s). Nothing was done. action_id: %s.", orDenied(r.Reason), r.ActionID), true, meta)
}

func orDenied(reason string) string {
	if reason == "" {
		return "denied by policy"
	}
	return reason
}

func approvalText(r *service.Response) string {
	text := fmt.Sprintf("Nomos decision: REQUIRE_APPROVAL (%s). approval_id: %s.", orDenied(r.Reason), r.ApprovalID)
	if r.ApprovalExpiresAt != "" {
		text += " The approval expires at " + r.ApprovalExpiresAt + "."
	}
	return text + " Nothing was done. Once a human approves it (nomos approvals approve " + r.ApprovalID +
		"), call the same tool again with the same arguments plus the argument approval_id set to this id."
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
func (s *Server) capabilities() toolResult {
	caps := map[string]any{}
	if s.cfg.Capabilities != nil {
		caps = s.cfg.Capabilities()
	}
	caps["identity"] = map[string]string{"principal": s.cfg.Identity.Principal, "agent": s.cfg.Identity.Agent}
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
	caps["upstream_tools_relayed"] = s.cfg.Gateway != nil
	b, err := json.MarshalIndent(caps, "", "  ")
	if err != nil {
		return textResult("capabilities: "+err.Error(), true, nil)
	}
	return textResult(string(b), false, nil)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("crypto/rand failed"))
	}
	return hex.EncodeToString(b)
}
