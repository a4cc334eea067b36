package mcpbuiltins

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy/action"
)

// Processor runs one action envelope through the Nomos pipeline and
// records the calls refused before it (*service.Service). meta is the
// transport evidence recorded on every event.
type Processor interface {
	ProcessWith(ctx context.Context, body []byte, id action.Identity, meta map[string]any) (*service.Response, error)
	Reject(ctx context.Context, env *action.Envelope, id action.Identity, meta map[string]any, class, reason string)
}

// Config wires a Set. Processor is required.
type Config struct {
	// Processor decides, records and executes the tools' actions.
	Processor Processor
	// ActionTypes are the built-in action types the executor runs; only
	// their tools are listed. Default: none (only nomos_capabilities).
	ActionTypes []string
	// Capabilities returns what nomos_capabilities reports. Default: the
	// identity and the tools only.
	Capabilities func() map[string]any
	// UpstreamsRelayed says whether the door relays upstream tools too,
	// for nomos_capabilities. Default: false.
	UpstreamsRelayed bool
}

// Set is the built-in tools of one door. It is safe for concurrent use.
type Set struct {
	cfg   Config
	tools []builtin
}

// New validates cfg.
func New(cfg Config) (*Set, error) {
	if cfg.Processor == nil {
		return nil, errors.New("mcp built-in tools: a processor is required")
	}
	return &Set{cfg: cfg, tools: builtins()}, nil
}

// ToolDefinitions are the listed tools as JSON, for a gateway
// (mcp.Builtins).
func (s *Set) ToolDefinitions() []json.RawMessage {
	tools := s.Tools()
	out := make([]json.RawMessage, 0, len(tools))
	for _, t := range tools {
		b, err := json.Marshal(t)
		if err == nil {
			out = append(out, b)
		}
	}
	return out
}

// CallTool runs a built-in tool for a gateway session (mcp.Builtins): the
// session's identity, the trace id of the session's other actions
// (mcp-<session id>) and the gateway's transport evidence.
func (s *Set) CallTool(ctx context.Context, call mcp.BuiltinCall) (any, bool) {
	meta := map[string]any{"downstream_transport": call.Transport, "downstream_session_id": call.SessionID}
	c := Caller{Identity: action.Identity{Principal: call.Identity.Principal, Agent: call.Identity.Agent},
		TraceID: "mcp-" + call.SessionID, Meta: meta}
	res, ok := s.Run(ctx, call.Name, call.Arguments, c)
	return res, ok
}

// Interface guards
var _ mcp.Builtins = (*Set)(nil)
