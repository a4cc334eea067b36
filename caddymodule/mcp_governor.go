package caddymodule

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/caddy-nomos/nomos/internal/redact"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// governor connects the MCP gateway to the Nomos pipeline: every governed
// MCP request becomes an action that is decided, recorded and, once the
// upstream answered, completed in audit.
type governor struct {
	svc *service.Service
	red *redact.Redactor
}

// Authorize decides one governed request. A request Nomos cannot interpret
// is a DENY the client can read; an internal failure is an error, and the
// gateway fails closed.
func (g *governor) Authorize(ctx context.Context, req mcp.AuthzRequest) (mcp.AuthzResult, error) {
	env := &action.Envelope{
		SchemaVersion: action.SchemaVersion, ActionID: newActionID(), TraceID: traceID(req.Metadata),
		ActionType: req.ActionType, Resource: req.Resource, Params: req.Params,
	}
	if req.ApprovalID != "" {
		ext, _ := json.Marshal(map[string]string{"approval_id": req.ApprovalID})
		env.Context.Extensions = map[string]json.RawMessage{"approval": ext}
	}
	auth, err := g.svc.Authorize(ctx, env, action.Identity{Principal: req.Identity.Principal, Agent: req.Identity.Agent}, metadata(req.Metadata))
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

// Rejected records a call the gateway refused before policy.
func (g *governor) Rejected(ctx context.Context, req mcp.AuthzRequest, _, reason string) {
	env := &action.Envelope{
		SchemaVersion: action.SchemaVersion, ActionID: newActionID(), TraceID: traceID(req.Metadata),
		ActionType: req.ActionType, Resource: req.Resource, Params: req.Params,
	}
	g.svc.Reject(ctx, env, action.Identity{Principal: req.Identity.Principal, Agent: req.Identity.Agent}, metadata(req.Metadata), reason)
}

// Completed records action.completed for an allowed request.
func (g *governor) Completed(ctx context.Context, _ mcp.AuthzRequest, res mcp.AuthzResult, out mcp.Outcome) {
	auth, ok := res.Handle.(*service.Authorization)
	if !ok {
		return
	}
	meta := map[string]any{"upstream_duration_ms": out.Duration.Milliseconds()}
	if out.ErrorClass != "" {
		meta["error_class"] = out.ErrorClass
	}
	g.svc.Complete(ctx, auth, out.Classification, meta)
}

// Visible lists a tool only when some rule could allow the principal to
// call it.
func (g *governor) Visible(_ context.Context, id mcp.Identity, server, tool string) bool {
	return g.svc.Reachable(action.Identity{Principal: id.Principal, Agent: id.Agent}, action.TypeMCPCall, "mcp://"+server+"/"+tool)
}

// traceID groups the actions of one downstream MCP session.
func traceID(meta map[string]string) string {
	if s := meta["downstream_session_id"]; s != "" && len(s) <= 120 {
		return "mcp-" + s
	}
	return newActionID()
}

func newActionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "act-" + hex.EncodeToString(b[:])
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
	_ mcp.Governor          = (*governor)(nil)
	_ mcp.RejectionRecorder = (*governor)(nil)
)
