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
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/mcp"
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
// the pipeline and shapes the answer for the model. A call refused before
// the pipeline is recorded too, labelled stdio like every event here.
func (s *Server) runBuiltin(ctx context.Context, b *builtin, raw json.RawMessage) toolResult {
	if b.actionType == "" {
		return s.capabilities()
	}
	env, err := s.envelope(b, raw)
	if err != nil {
		reason := "Invalid arguments: " + err.Error()
		s.cfg.Processor.Reject(context.WithoutCancel(ctx), env, s.cfg.Identity, s.meta(), audit.ResultValidationError, reason)
		return textResult(reason+". Nothing was done.", true, map[string]string{"nomos/decision": policy.Deny})
	}
	body, err := json.Marshal(env)
	if err != nil {
		return textResult("Nomos decision: DENY (internal_error). Nothing was done.", true, map[string]string{"nomos/decision": policy.Deny})
	}
	resp, err := s.cfg.Processor.ProcessWith(ctx, body, s.cfg.Identity, s.meta())
	if err != nil {
		se := service.AsError(err)
		return textResult(mcp.DenialText(mcp.AuthzResult{Decision: policy.Deny, Reason: se.Code + ": " + se.Msg}), true,
			map[string]string{"nomos/decision": policy.Deny})
	}
	return responseResult(resp)
}

// meta is the transport evidence of every built-in action.
func (s *Server) meta() map[string]any {
	return map[string]any{"downstream_transport": mcp.DownstreamStdio}
}

// envelope builds the action of a built-in call; a retry's approval id
// goes to context.extensions.approval, as for every other front door. On
// an error the envelope still names the action type, for the audit.
func (s *Server) envelope(b *builtin, raw json.RawMessage) (*action.Envelope, error) {
	env := action.NewEnvelope(b.actionType, "", nil, s.traceID)
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
func responseResult(r *service.Response) toolResult {
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
