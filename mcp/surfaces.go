package mcp

import (
	"context"
	"encoding/json"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/jsonrpc"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// listNamed aggregates prompts/list, prefixing names per route.
func (g *Gateway) listNamed(ctx context.Context, s *session, m *message, key string) []byte {
	var all []json.RawMessage
	for _, u := range g.ups {
		if !u.advertises(s, key) {
			continue
		}
		items, err := g.listOn(ctx, s, u, m.Method, key)
		if err != nil {
			return g.listError(m, err)
		}
		items = g.visibleItems(ctx, s, u, items, "name", func(name string) AuthzRequest {
			return g.promptRequest(s, u, name, nil)
		})
		all = append(all, renameItems(items, g.route.prefixFor(u.cfg.Name))...)
	}
	return jsonrpc.Result(m.ID, map[string]any{key: nonNil(all)})
}

// visibleItems keeps the listed items whose request (built from the
// item's member field) is visible to the caller: a list never shows what
// the caller could not use.
func (g *Gateway) visibleItems(ctx context.Context, s *session, u *Upstream, items []json.RawMessage, field string, request func(string) AuthzRequest) []json.RawMessage {
	out, _, _ := g.path.VisibleItems(ctx, items, field, func(name string, _ map[string]json.RawMessage) AuthzRequest { return request(name) })
	return out
}

// listResources aggregates resources/list or resources/templates/list and
// remembers which upstream owns each URI.
func (g *Gateway) listResources(ctx context.Context, s *session, m *message, key string) []byte {
	var all []json.RawMessage
	for _, u := range g.ups {
		if !u.advertises(s, "resources") {
			continue
		}
		items, err := g.listOn(ctx, s, u, m.Method, key)
		if err != nil {
			return g.listError(m, err)
		}
		if key == "resources" {
			items = g.visibleItems(ctx, s, u, items, "uri", func(uri string) AuthzRequest {
				return g.resourceRequest(s, u, uri)
			})
		}
		s.recordOwners(items, u.cfg.Name)
		all = append(all, items...)
	}
	return jsonrpc.Result(m.ID, map[string]any{key: nonNil(all)})
}

func nonNil(items []json.RawMessage) []json.RawMessage {
	if items == nil {
		return []json.RawMessage{}
	}
	return items
}

func (g *Gateway) listOn(ctx context.Context, s *session, u *Upstream, method, key string) ([]json.RawMessage, error) {
	c, err := u.connFor(ctx, s)
	if err != nil {
		return nil, err
	}
	return u.listAll(ctx, c, method, key)
}

// advertises reports whether the upstream session has the capability.
func (u *Upstream) advertises(s *session, capability string) bool {
	c := s.link(u.cfg.Name)
	if c == nil {
		return false
	}
	var r struct {
		Capabilities map[string]json.RawMessage `json:"capabilities"`
	}
	_ = json.Unmarshal(c.init, &r)
	_, ok := r.Capabilities[capability]
	return ok
}

func renameItems(items []json.RawMessage, prefix string) []json.RawMessage {
	if prefix == "" {
		return items
	}
	out := make([]json.RawMessage, 0, len(items))
	for _, it := range items {
		var obj map[string]json.RawMessage
		var name string
		if json.Unmarshal(it, &obj) != nil || json.Unmarshal(obj["name"], &name) != nil {
			continue
		}
		obj["name"], _ = json.Marshal(prefix + name)
		b, _ := json.Marshal(obj)
		out = append(out, b)
	}
	return out
}

func (s *session) recordOwners(items []json.RawMessage, upstream string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		var r struct {
			URI         string `json:"uri"`
			URITemplate string `json:"uriTemplate"`
		}
		if json.Unmarshal(it, &r) == nil && r.URI != "" {
			s.owners[r.URI] = upstream
		}
	}
}

// resourceOwner finds the upstream of a URI: the only upstream with
// resources, or the one whose resources/list named it.
func (g *Gateway) resourceOwner(s *session, uri string) *Upstream {
	s.mu.Lock()
	name, ok := s.owners[uri]
	s.mu.Unlock()
	if ok {
		return g.byName[name]
	}
	var only *Upstream
	for _, u := range g.ups {
		if u.advertises(s, "resources") {
			if only != nil {
				return nil
			}
			only = u
		}
	}
	return only
}

// getPrompt governs prompts/get as mcp.prompt_get. A prompt hidden by
// policy answers exactly as an unknown one.
func (g *Gateway) getPrompt(ctx context.Context, s *session, m *message, related *responder) []byte {
	var p struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	_ = json.Unmarshal(m.Params, &p)
	u, name, ok := g.resolveNamed(p.Name)
	req := g.promptRequest(s, u, name, p.Arguments)
	if p.Name == "" || !ok || !g.path.Visible(ctx, req) {
		return g.refuseUnknown(ctx, m, req, UnknownReason("prompt", p.Name))
	}
	params, _ := setMember(m.Params, "name", name)
	return g.governedForward(ctx, s, m, related, u, req, params, "messages")
}

func (g *Gateway) promptRequest(s *session, u *Upstream, name string, args json.RawMessage) AuthzRequest {
	return g.onSession(s, u, PromptRequest(s.identity, upstreamName(u), name, args), "prompt", name)
}

func (g *Gateway) resourceRequest(s *session, u *Upstream, uri string) AuthzRequest {
	return g.onSession(s, u, ResourceRequest(s.identity, upstreamName(u), uri), "upstream_uri", uri)
}

// onSession adds session s's trace and evidence to a request built for u.
func (g *Gateway) onSession(s *session, u *Upstream, req AuthzRequest, metaKey, metaValue string) AuthzRequest {
	return g.inSession(s, req, upstreamName(u), metaKey, metaValue, "")
}

func upstreamName(u *Upstream) string {
	if u == nil {
		return ""
	}
	return u.cfg.Name
}

// refuseUnknown records and answers a name that does not exist for the
// caller, whether it is missing upstream or hidden by policy.
func (g *Gateway) refuseUnknown(ctx context.Context, m *message, req AuthzRequest, reason string) []byte {
	g.path.Refuse(ctx, req, audit.ResultValidationError, reason)
	return UnknownError(m.ID, reason)
}

// readResource governs resources/read as mcp.resource_read.
func (g *Gateway) readResource(ctx context.Context, s *session, m *message, related *responder) []byte {
	uri := messageName(m)
	u := g.resourceOwner(s, uri)
	req := g.resourceRequest(s, u, uri)
	if uri == "" || u == nil || !g.path.Visible(ctx, req) {
		return g.refuseUnknown(ctx, m, req, UnknownReason("resource", uri))
	}
	return g.governedForward(ctx, s, m, related, u, req, m.Params, "contents")
}

// complete governs completion/complete as mcp.completion. The ref must be
// visible both as a completion and as the prompt or resource it names.
func (g *Gateway) complete(ctx context.Context, s *session, m *message, related *responder) []byte {
	ref := CompletionRefOf(m.Params)
	u, target, params := g.completionTarget(s, m, ref.Type, ref.Name, ref.URI)
	completion, named := CompletionRequests(s.identity, upstreamName(u), ref.Type, target)
	req := g.onSession(s, u, completion, "completion_ref", target)
	if u == nil || !g.path.Visible(ctx, req) || !g.path.Visible(ctx, named) {
		return g.refuseUnknown(ctx, m, req, "unknown completion ref")
	}
	return g.governedForward(ctx, s, m, related, u, req, params, "")
}

func (g *Gateway) completionTarget(s *session, m *message, typ, name, uri string) (*Upstream, string, json.RawMessage) {
	if typ == "ref/prompt" {
		u, upName, ok := g.resolveNamed(name)
		if !ok {
			return nil, "", nil
		}
		var p map[string]json.RawMessage
		_ = json.Unmarshal(m.Params, &p)
		ref, _ := setMember(p["ref"], "name", upName)
		p["ref"] = ref
		out, _ := json.Marshal(p)
		return u, upName, out
	}
	return g.resourceOwner(s, uri), uri, m.Params
}

// subscribe forwards resources/subscribe and unsubscribe to the owner. On
// a shared stdio session the upstream subscription is reference-counted
// across downstream sessions.
func (g *Gateway) subscribe(ctx context.Context, s *session, m *message) []byte {
	uri := messageName(m)
	u := g.resourceOwner(s, uri)
	if u == nil || !g.path.Visible(ctx, g.resourceRequest(s, u, uri)) { // hidden = unknown
		return UnknownError(m.ID, UnknownReason("resource", uri))
	}
	on := m.Method == "resources/subscribe"
	if c := s.link(u.cfg.Name); c == nil || c.dedicated != nil || !c.subscribedElsewhere(s, uri, u.cfg.Name) {
		res, rerr, err := g.forward(ctx, s, u, m, m.Params, nil, nil)
		if err != nil {
			return g.upstreamRPCError(m.ID, u, err)
		}
		if rerr != nil {
			return g.upstreamRPCErrorFor(m.ID, u.cfg.Name, rerr, nil)
		}
		s.recordSubscription(uri, u.cfg.Name, on)
		return jsonrpc.Result(m.ID, res)
	}
	s.recordSubscription(uri, u.cfg.Name, on)
	return jsonrpc.Result(m.ID, struct{}{})
}

func (s *session) recordSubscription(uri, upstream string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if on {
		s.subs[uri] = upstream
	} else {
		delete(s.subs, uri)
	}
}

// setLevel records the session's log level (used to filter relayed log
// messages) and forwards it to the session's own upstream sessions.
func (g *Gateway) setLevel(ctx context.Context, s *session, m *message) []byte {
	var p struct {
		Level string `json:"level"`
	}
	if json.Unmarshal(m.Params, &p) != nil || logLevelIndex(p.Level) < 0 {
		return jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeInvalidParams, "unknown log level", nil)
	}
	s.mu.Lock()
	s.logLevel = logLevelIndex(p.Level)
	s.mu.Unlock()
	for _, u := range g.ups {
		if c := s.link(u.cfg.Name); c != nil && c.dedicated == s && u.advertises(s, "logging") {
			if _, _, err := g.forward(ctx, s, u, m, m.Params, nil, nil); err != nil {
				return g.upstreamRPCError(m.ID, u, err)
			}
		}
	}
	return jsonrpc.Result(m.ID, struct{}{})
}

func setMember(raw json.RawMessage, key string, value any) (json.RawMessage, error) {
	var p map[string]json.RawMessage
	if err := json.Unmarshal(raw, &p); err != nil {
		return raw, err
	}
	p[key], _ = json.Marshal(value)
	return json.Marshal(p)
}

// governedForward runs the governed-call path for a non-tool request; a
// refusal is a JSON-RPC error carrying the same text a tool refusal does.
func (g *Gateway) governedForward(ctx context.Context, s *session, m *message, related *responder, u *Upstream, req AuthzRequest, params json.RawMessage, capKey string) []byte {
	var out []byte
	res, ok := g.path.Run(ctx, req, func(res AuthzResult) Outcome {
		result, rerr, err := g.forward(ctx, s, u, m, params, related, res.Redact)
		var outcome Outcome
		out, outcome = g.surfaceOutcome(m.ID, u, result, rerr, err, res, capKey)
		return outcome
	})
	if !ok {
		return jsonrpc.RawError(m.ID, denialError(res))
	}
	return out
}

func (g *Gateway) surfaceOutcome(id json.RawMessage, u *Upstream, result json.RawMessage, rerr *rpcError, err error, res AuthzResult, capKey string) ([]byte, Outcome) {
	switch {
	case err != nil:
		class, errClass := classify(err)
		return g.upstreamRPCError(id, u, err), Outcome{Classification: class, ErrorClass: errClass}
	case rerr != nil:
		return g.upstreamRPCErrorFor(id, u.cfg.Name, rerr, res.Redact), Outcome{Classification: audit.ResultUpstreamError, ErrorClass: "rpc"}
	}
	shaped, _ := shapeOutput(result, res, capKey)
	return jsonrpc.Result(id, shaped), Outcome{Classification: audit.ResultSuccess}
}

// denialError is the JSON-RPC error of a refused non-tool request.
func denialError(res AuthzResult) *rpcError {
	data := map[string]string{"decision": res.Decision, "reason": res.Reason}
	if res.ApprovalID != "" {
		data["approval_id"] = res.ApprovalID
	}
	raw, _ := json.Marshal(data)
	return &rpcError{Code: CodePolicyDenied, Message: DenialText(res), Data: raw}
}

// serverRequestTypes are the upstream→client requests Nomos governs;
// others (roots/list) are relayed ungoverned.
var serverRequestTypes = map[string][2]string{
	"sampling/createMessage": {action.TypeMCPSample, "sample"},
	"elicitation/create":     {action.TypeMCPElicit, "elicit"},
}

// governServerRequest runs the governed-call path for an upstream→client
// request; relay carries it to the client and classifies the answer.
func (g *Gateway) governServerRequest(ctx context.Context, s *session, server, method string, params json.RawMessage, relay func(redact func(string) string) Outcome) *rpcError {
	req, governed := ServerRequest(s.identity, server, method, params)
	if !governed {
		relay(nil)
		return nil
	}
	u := g.byName[server]
	req = g.onSession(s, u, req, "upstream_method", method)
	if u == nil {
		const reason = "upstream not on this route"
		g.path.Refuse(ctx, req, audit.ResultValidationError, reason)
		return denialError(AuthzResult{Decision: policy.Deny, Reason: reason})
	}
	if res, ok := g.path.Run(ctx, req, func(res AuthzResult) Outcome { return relay(res.Redact) }); !ok {
		return denialError(res)
	}
	return nil
}
