package caddymodule

import (
	"context"
	"errors"
	"net/http"

	"github.com/caddy-nomos/nomos/internal/redact"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// governor connects every MCP front door (through mcp.Path) to the Nomos
// pipeline: each governed MCP request becomes an action that is decided,
// recorded and, once carried out or refused, completed in audit.
type governor struct {
	svc *service.Service
	red *redact.Redactor
	// after, when set, records completions once the client has its answer
	// (nomos_guard, whose upstream's response must not wait for audit).
	after *afterResponse
}

// envelope is the action of a governed MCP request.
func envelope(req mcp.AuthzRequest) *action.Envelope {
	return action.NewEnvelope(req.ActionType, req.Resource, req.Params, req.TraceID).
		WithApproval(req.ApprovalID).WithToolDefinition(req.ToolFingerprint)
}

func identityOf(id mcp.Identity) action.Identity {
	return action.Identity{Principal: id.Principal, Agent: id.Agent}
}

// Authorize decides one governed request. A request Nomos cannot interpret
// is a DENY the client can read; an internal failure is an error, and the
// door fails closed.
func (g *governor) Authorize(ctx context.Context, req mcp.AuthzRequest) (mcp.AuthzResult, error) {
	auth, err := g.svc.Authorize(ctx, envelope(req), identityOf(req.Identity), metadata(req.Metadata))
	if err != nil {
		return refusal(err)
	}
	return g.result(auth)
}

// refusal maps a request error to a readable DENY, or to a failure.
func refusal(err error) (mcp.AuthzResult, error) {
	var se *service.Error
	if errors.As(err, &se) && se.Status == http.StatusBadRequest {
		return mcp.AuthzResult{Decision: policy.Deny, Reason: se.Code + ": " + se.Msg}, nil
	}
	return mcp.AuthzResult{}, err
}

func (g *governor) result(auth *service.Authorization) (mcp.AuthzResult, error) {
	resp := auth.Response
	res := mcp.AuthzResult{
		Decision: resp.Decision, Reason: resp.Reason, ApprovalID: resp.ApprovalID,
		ApprovalFingerprint: resp.ApprovalFingerprint, Handle: auth,
	}
	res.ApprovalExpiresAt = auth.ApprovalExpiresAt()
	red := g.red
	if len(auth.Obligations.Redact) > 0 {
		var err error
		if red, err = red.With(auth.Obligations.Redact, nil); err != nil {
			return mcp.AuthzResult{}, err
		}
	}
	res.Redact = red.String
	if p := auth.Obligations.OutputMaxBytes; p != nil {
		res.OutputMaxBytes = *p
	}
	if p := auth.Obligations.OutputMaxLines; p != nil {
		res.OutputMaxLines = *p
	}
	return res, nil
}

// Rejected records a request a door refused before policy.
func (g *governor) Rejected(ctx context.Context, req mcp.AuthzRequest, class, reason string) {
	g.svc.Reject(ctx, envelope(req), identityOf(req.Identity), metadata(req.Metadata), class, reason)
}

// Completed records action.completed and trace.end for an authorized
// request, forwarded or not.
func (g *governor) Completed(ctx context.Context, _ mcp.AuthzRequest, res mcp.AuthzResult, out mcp.Outcome) {
	auth, ok := res.Handle.(*service.Authorization)
	if !ok {
		return
	}
	var meta map[string]any
	if out.Classification != "" { // forwarded: how the upstream answered
		meta = map[string]any{"upstream_duration_ms": out.Duration.Milliseconds()}
		if out.ErrorClass != "" {
			meta["error_class"] = out.ErrorClass
		}
	}
	if g.after != nil {
		g.after.run(func() { g.svc.Complete(ctx, auth, out.Classification, meta) })
		return
	}
	g.svc.Complete(ctx, auth, out.Classification, meta)
}

// Visible shows a name only when some rule could allow the principal to
// use it.
func (g *governor) Visible(_ context.Context, req mcp.AuthzRequest) bool {
	return g.svc.Reachable(identityOf(req.Identity), req.ActionType, req.Resource, req.ToolFingerprint)
}

// ToolsListed records mcp.tools_list.
func (g *governor) ToolsListed(ctx context.Context, id mcp.Identity, meta map[string]string, shown, hidden []string) {
	trace := ""
	if sid := meta["downstream_session_id"]; sid != "" {
		trace = "mcp-" + sid
	}
	g.svc.Discovered(ctx, identityOf(id), trace, metadata(meta), shown, hidden)
}

func metadata(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Interface guards
var (
	_ mcp.Governor     = (*governor)(nil)
	_ mcp.ListObserver = (*governor)(nil)
)
