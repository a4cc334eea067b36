package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

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
		all = append(all, renameItems(items, g.route.prefixFor(u.cfg.Name))...)
	}
	return encodeResult(m.ID, map[string]any{key: nonNil(all)})
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
		s.recordOwners(items, u.cfg.Name)
		all = append(all, items...)
	}
	return encodeResult(m.ID, map[string]any{key: nonNil(all)})
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

// getPrompt governs prompts/get as mcp.prompt_get.
func (g *Gateway) getPrompt(ctx context.Context, s *session, m *message, related *responder) []byte {
	var p struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if json.Unmarshal(m.Params, &p) != nil || p.Name == "" {
		return encodeError(m.ID, codeInvalidParams, "prompts/get needs a name", nil)
	}
	u, name, ok := g.resolveNamed(p.Name)
	if !ok {
		return encodeError(m.ID, codeInvalidParams, "unknown prompt: "+p.Name, nil)
	}
	params, _ := setMember(m.Params, "name", name)
	req := g.surfaceRequest(s, u, ActionPromptGet, "prompt/"+name, "prompt", name,
		map[string]any{"prompt": name, "prompt_arguments": p.Arguments})
	return g.governedForward(ctx, s, m, related, u, req, params, "messages")
}

// readResource governs resources/read as mcp.resource_read.
func (g *Gateway) readResource(ctx context.Context, s *session, m *message, related *responder) []byte {
	uri := messageName(m)
	u := g.resourceOwner(s, uri)
	if uri == "" || u == nil {
		return encodeError(m.ID, codeInvalidParams, "unknown resource: "+uri, nil)
	}
	req := g.surfaceRequest(s, u, ActionResourceRead, "resource/"+uri, "upstream_uri", uri,
		map[string]any{"uri": uri})
	return g.governedForward(ctx, s, m, related, u, req, m.Params, "contents")
}

// complete governs completion/complete as mcp.completion.
func (g *Gateway) complete(ctx context.Context, s *session, m *message, related *responder) []byte {
	var p struct {
		Ref struct {
			Type string `json:"type"`
			Name string `json:"name"`
			URI  string `json:"uri"`
		} `json:"ref"`
	}
	if json.Unmarshal(m.Params, &p) != nil {
		return encodeError(m.ID, codeInvalidParams, "completion/complete needs a ref", nil)
	}
	u, target, params := g.completionTarget(s, m, p.Ref.Type, p.Ref.Name, p.Ref.URI)
	if u == nil {
		return encodeError(m.ID, codeInvalidParams, "unknown completion ref", nil)
	}
	req := g.surfaceRequest(s, u, ActionCompletion, "completion/"+target, "completion_ref", target,
		map[string]any{"ref": target})
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
	if u == nil {
		return encodeError(m.ID, codeInvalidParams, "unknown resource: "+uri, nil)
	}
	on := m.Method == "resources/subscribe"
	if c := s.link(u.cfg.Name); c == nil || c.dedicated != nil || !c.subscribedElsewhere(s, uri, u.cfg.Name) {
		res, rerr, err := g.forward(ctx, s, u, m, m.Params, nil)
		if err != nil {
			return g.upstreamRPCError(m.ID, u, err)
		}
		if rerr != nil {
			return encodeRawError(m.ID, rerr)
		}
		s.recordSubscription(uri, u.cfg.Name, on)
		return encodeResult(m.ID, res)
	}
	s.recordSubscription(uri, u.cfg.Name, on)
	return encodeResult(m.ID, struct{}{})
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
		return encodeError(m.ID, codeInvalidParams, "unknown log level", nil)
	}
	s.mu.Lock()
	s.logLevel = logLevelIndex(p.Level)
	s.mu.Unlock()
	for _, u := range g.ups {
		if c := s.link(u.cfg.Name); c != nil && c.dedicated == s && u.advertises(s, "logging") {
			if _, _, err := g.forward(ctx, s, u, m, m.Params, nil); err != nil {
				return g.upstreamRPCError(m.ID, u, err)
			}
		}
	}
	return encodeResult(m.ID, struct{}{})
}

func setMember(raw json.RawMessage, key string, value any) (json.RawMessage, error) {
	var p map[string]json.RawMessage
	if err := json.Unmarshal(raw, &p); err != nil {
		return raw, err
	}
	p[key], _ = json.Marshal(value)
	return json.Marshal(p)
}

// surfaceRequest builds the action of a governed non-tool request.
func (g *Gateway) surfaceRequest(s *session, u *Upstream, actionType, suffix, metaKey, metaValue string, extra map[string]any) AuthzRequest {
	extra["upstream_server"] = u.cfg.Name
	canon, err := action.CanonicalMarshal(extra)
	if err != nil { // unreachable for the maps built here; fail visibly
		canon = json.RawMessage(`{"error":"params not canonicalizable"}`)
	}
	return AuthzRequest{
		Identity: s.identity, ActionType: actionType,
		Resource: "mcp://" + strings.ToLower(u.cfg.Name) + "/" + suffix,
		Params:   canon,
		Metadata: g.metadata(s, u.cfg.Name, metaKey, metaValue),
	}
}

// governedForward asks the governor and forwards an allowed non-tool
// request; a denial is a JSON-RPC error.
func (g *Gateway) governedForward(ctx context.Context, s *session, m *message, related *responder, u *Upstream, req AuthzRequest, params json.RawMessage, capKey string) []byte {
	res, err := g.gov.Authorize(ctx, req)
	if err != nil {
		g.log.Error("mcp governor failed; denying", "error", err)
		res = AuthzResult{Decision: DecisionDeny, Reason: "internal_error"}
	}
	if res.Decision != DecisionAllow {
		return denialError(m.ID, res)
	}
	start := g.now()
	result, rerr, err := g.forward(ctx, s, u, m, params, related)
	out, outcome := g.surfaceOutcome(m.ID, u, result, rerr, err, res, capKey)
	outcome.Duration = g.now().Sub(start)
	g.gov.Completed(context.WithoutCancel(ctx), req, res, outcome)
	return out
}

func (g *Gateway) surfaceOutcome(id json.RawMessage, u *Upstream, result json.RawMessage, rerr *rpcError, err error, res AuthzResult, capKey string) ([]byte, Outcome) {
	switch {
	case err != nil:
		class, errClass := classify(err)
		return g.upstreamRPCError(id, u, err), Outcome{Classification: class, ErrorClass: errClass}
	case rerr != nil:
		return encodeRawError(id, rerr), Outcome{Classification: ClassUpstreamError, ErrorClass: "rpc"}
	}
	shaped, _ := shapeOutput(result, res, capKey)
	return encodeResult(id, shaped), Outcome{Classification: ClassSuccess}
}

// denialError is the JSON-RPC error of a denied non-tool request.
func denialError(id json.RawMessage, res AuthzResult) []byte {
	data := map[string]string{"decision": res.Decision, "reason": res.Reason}
	if res.ApprovalID != "" {
		data["approval_id"] = res.ApprovalID
	}
	return encodeError(id, CodePolicyDenied, fmt.Sprintf("%s: %s", res.Decision, res.Reason), data)
}

// governServerRequest governs upstream→client sampling and elicitation.
// Other server requests (roots/list) are relayed ungoverned. On success it
// returns the function that records the outcome once the client answered.
func (g *Gateway) governServerRequest(ctx context.Context, s *session, server, method string, params json.RawMessage) (func(Outcome), *rpcError) {
	actionType, suffix := "", ""
	switch method {
	case "sampling/createMessage":
		actionType, suffix = ActionSample, "sample"
	case "elicitation/create":
		actionType, suffix = ActionElicit, "elicit"
	default:
		return func(Outcome) {}, nil
	}
	u := g.byName[server]
	if u == nil {
		return nil, &rpcError{Code: CodePolicyDenied, Message: "DENY: upstream not on this route"}
	}
	req := g.surfaceRequest(s, u, actionType, suffix, "upstream_method", method,
		map[string]any{"method": method, "request_hash": action.SHA256Hex(params)})
	res, err := g.gov.Authorize(ctx, req)
	if err != nil {
		g.log.Error("mcp governor failed; denying", "error", err)
		res = AuthzResult{Decision: DecisionDeny, Reason: "internal_error"}
	}
	if res.Decision != DecisionAllow {
		return nil, &rpcError{Code: CodePolicyDenied, Message: fmt.Sprintf("%s: %s", res.Decision, res.Reason)}
	}
	return func(out Outcome) { g.gov.Completed(context.WithoutCancel(ctx), req, res, out) }, nil
}
