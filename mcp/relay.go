package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddy-nomos/nomos/internal/errcode"
	"github.com/caddy-nomos/nomos/internal/jsonrpc"
)

// serveInitialize opens a downstream session: one upstream session per
// remote upstream (initialized with the client's own params), the shared
// session for stdio upstreams.
func (g *Gateway) serveInitialize(w http.ResponseWriter, r *http.Request, id Identity, m *message) {
	for _, old := range g.sessions.sweep(g.now(), g.route.SessionTTL) {
		g.shareRelease(old)
		old.close()
	}
	if !g.admit(r.Context(), w, id, m) {
		return
	}
	s, err := newSession(g, id)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeInternalError, "session id", nil))
		return
	}
	if !g.shareAdmit(w, r, s) {
		s.close()
		return
	}
	params, version := downstreamInitParams(m.Params)
	s.protocolVersion, s.initParams, s.caps = version, params, capabilitiesOf(params)
	results, resp := g.initUpstreams(r.Context(), s, m, params)
	if resp != nil {
		g.shareRelease(s)
		s.close()
		writeJSON(w, http.StatusOK, resp)
		return
	}
	if !g.sessions.add(s, g.route.MaxSessionsPerPrincipal) { // lost a race for the last slot
		g.shareRelease(s)
		s.close()
		g.denySessionLimit(w, id)
		return
	}
	w.Header().Set(HeaderSessionID, s.id)
	writeJSON(w, http.StatusOK, jsonrpc.Result(m.ID, g.withToolsCapability(g.mergeInit(results, version))))
}

// maxInitParamsBytes bounds the client's initialize params, which a
// session keeps for as long as it lives (to initialize upstreams again).
const maxInitParamsBytes = 64 << 10

// admit decides whether id may open one more session: initialize is paced
// per principal, its params are bounded, and a principal holds at most
// MaxSessionsPerPrincipal live sessions. A refusal has been answered.
func (g *Gateway) admit(ctx context.Context, w http.ResponseWriter, id Identity, m *message) bool {
	paced, err := g.paceInitialize(ctx, id.Principal)
	if err != nil {
		g.log.Error("mcp initialize pacing: shared state unavailable", "error", err)
		httpDeny(w, http.StatusServiceUnavailable, errcode.StateUnavailable, "shared state unavailable; retry later")
		return false
	}
	if !paced {
		g.log.Warn("mcp initialize rate limited", "principal", id.Principal)
		httpDeny(w, http.StatusTooManyRequests, errcode.RateLimited, "too many initialize requests; retry later")
		return false
	}
	if len(m.Params) > maxInitParamsBytes {
		writeJSON(w, http.StatusOK, jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeInvalidParams, fmt.Sprintf("initialize params exceed %d bytes", maxInitParamsBytes), nil))
		return false
	}
	if g.sessions.count(id.Principal) >= g.route.MaxSessionsPerPrincipal {
		g.denySessionLimit(w, id)
		return false
	}
	return true
}

// paceInitialize takes one initialize from the principal's bucket: the
// route's shared one when replicas share state, else this process's.
func (g *Gateway) paceInitialize(ctx context.Context, principal string) (bool, error) {
	if g.route.InitPacer == nil {
		return g.initLimit.Allow(principal, g.now()), nil
	}
	ctx, cancel := context.WithTimeout(ctx, registryTimeout)
	defer cancel()
	return g.route.InitPacer.Allow(ctx, principal, g.route.InitializePerMinute)
}

func (g *Gateway) denySessionLimit(w http.ResponseWriter, id Identity) {
	g.log.Warn("mcp session limit reached", "principal", id.Principal, "limit", g.route.MaxSessionsPerPrincipal)
	httpDeny(w, http.StatusTooManyRequests, errcode.SessionLimit,
		fmt.Sprintf("the principal holds %d live sessions; end one with DELETE or let one expire", g.route.MaxSessionsPerPrincipal))
}

// downstreamInitParams pins the requested protocol version to one the
// gateway serves and returns the params to forward, with only the
// mirrored capabilities the client declared.
func downstreamInitParams(raw json.RawMessage) (json.RawMessage, string) {
	var p map[string]json.RawMessage
	if json.Unmarshal(raw, &p) != nil || p == nil {
		p = map[string]json.RawMessage{}
	}
	var asked string
	_ = json.Unmarshal(p["protocolVersion"], &asked)
	version := SupportedVersions[0]
	if slices.Contains(SupportedVersions, asked) {
		version = asked
	}
	p["protocolVersion"], _ = json.Marshal(version)
	out, _ := json.Marshal(p)
	return withCapabilities(out, capabilitiesOf(out)), version
}

func (g *Gateway) initUpstreams(ctx context.Context, s *session, m *message, params json.RawMessage) ([]json.RawMessage, []byte) {
	results := make([]json.RawMessage, 0, len(g.ups))
	var failed []byte
	for _, u := range g.ups {
		res, resp := g.initUpstream(ctx, s, u, m, params)
		if resp != nil {
			// With several upstreams the others still serve; the missing
			// one is dialed again on first use and its server
			// capabilities come from the gateway's own session.
			failed = resp
			res = u.controlInit()
		}
		if res != nil {
			results = append(results, res)
		}
	}
	if failed != nil && (len(g.ups) == 1 || len(results) == 0) {
		return nil, failed
	}
	return results, nil
}

func (g *Gateway) initUpstream(ctx context.Context, s *session, u *Upstream, m *message, params json.RawMessage) (json.RawMessage, []byte) {
	if u.cfg.Transport == TransportStdio {
		c, err := u.sharedConn(ctx, s)
		if err != nil {
			return nil, g.upstreamRPCError(m.ID, u, err)
		}
		s.setLink(u.cfg.Name, c)
		return c.init, nil
	}
	c, rerr, err := u.dial(ctx, s, params, false)
	if err != nil {
		return nil, g.upstreamRPCError(m.ID, u, err)
	}
	if rerr != nil {
		return nil, g.upstreamRPCErrorFor(m.ID, u.cfg.Name, rerr, nil)
	}
	s.setLink(u.cfg.Name, c)
	return c.init, nil
}

// upstreamRPCError answers a failed upstream exchange with a JSON-RPC error
// that names the class only; details go to the log.
func (g *Gateway) upstreamRPCError(id json.RawMessage, u *Upstream, err error) []byte {
	class, errClass := classify(err)
	g.log.Warn("mcp upstream request failed", "upstream_server", u.cfg.Name, "error_class", errClass, "error", err)
	return UpstreamFailure(id, "", class, u.cfg.Name)
}

// mergeInit builds the downstream initialize result: the upstream's own
// with one upstream (transparency), a union of capabilities with several.
func (g *Gateway) mergeInit(results []json.RawMessage, version string) any {
	if len(g.ups) == 1 && len(results) == 1 {
		var r map[string]json.RawMessage
		if json.Unmarshal(results[0], &r) == nil {
			r["protocolVersion"], _ = json.Marshal(g.answeredVersion(r["protocolVersion"], version))
			return r
		}
	}
	caps := map[string]json.RawMessage{}
	var instructions []string
	for _, res := range results {
		var r struct {
			Capabilities map[string]json.RawMessage `json:"capabilities"`
			Instructions string                     `json:"instructions"`
		}
		_ = json.Unmarshal(res, &r)
		for k, v := range r.Capabilities {
			caps[k] = v
		}
		if r.Instructions != "" {
			instructions = append(instructions, r.Instructions)
		}
	}
	out := map[string]any{"protocolVersion": version, "capabilities": caps,
		"serverInfo": map[string]string{"name": "nomos", "version": "1"}}
	if len(instructions) > 0 {
		out["instructions"] = strings.Join(instructions, "\n\n")
	}
	return out
}

// withToolsCapability declares tools when the gateway offers built-in
// tools, whatever the upstreams declare.
func (g *Gateway) withToolsCapability(res any) any {
	if g.builtins == nil {
		return res
	}
	b, _ := json.Marshal(res)
	var r map[string]json.RawMessage
	if json.Unmarshal(b, &r) != nil {
		return res
	}
	DeclareTools(r)
	return r
}

// DeclareTools turns the tools capability on in an initialize result, for
// a door that offers tools of its own (the built-in nomos_* tools) whatever
// the upstreams declare.
func DeclareTools(r map[string]json.RawMessage) {
	var caps map[string]json.RawMessage
	_ = json.Unmarshal(r["capabilities"], &caps)
	if caps == nil {
		caps = map[string]json.RawMessage{}
	}
	if _, ok := caps["tools"]; !ok {
		caps["tools"] = json.RawMessage(`{}`)
	}
	r["capabilities"], _ = json.Marshal(caps)
}

// answeredVersion keeps a remote upstream's own answer when the gateway
// serves it too (the client then speaks what the upstream speaks); a
// shared stdio child is adapted to the version the client asked for.
func (g *Gateway) answeredVersion(upstream json.RawMessage, asked string) string {
	var v string
	if g.ups[0].cfg.Transport != TransportStdio && json.Unmarshal(upstream, &v) == nil && slices.Contains(SupportedVersions, v) {
		return v
	}
	return asked
}

// handleNotification relays a client notification.
func (g *Gateway) handleNotification(ctx context.Context, s *session, m *message) {
	if !ClientNotifications[m.Method] {
		g.log.Debug("mcp client notification dropped: not one a client sends in the protocol", "method", m.Method, "downstream_session_id", s.id)
		return
	}
	switch m.Method {
	case "notifications/cancelled":
		s.cancelInflight(ctx, m.Params)
	case "notifications/initialized", "notifications/roots/list_changed":
		g.broadcastDedicated(ctx, s, m)
	}
}

// broadcastDedicated forwards a notification to the session's own upstream
// sessions; shared stdio sessions were initialized by the gateway.
func (g *Gateway) broadcastDedicated(ctx context.Context, s *session, m *message) {
	for _, u := range g.ups {
		if c := s.link(u.cfg.Name); c != nil && c.dedicated == s {
			if err := c.notify(ctx, m.Method, m.Params); err != nil {
				g.log.Debug("mcp notification relay failed", "upstream_server", u.cfg.Name, "error", err)
			}
		}
	}
}

// handleRequest answers one client request.
func (g *Gateway) handleRequest(ctx context.Context, s *session, m *message, related *responder) []byte {
	switch m.Method {
	case "ping":
		return jsonrpc.Result(m.ID, struct{}{})
	case "tools/list":
		return g.listTools(ctx, s, m)
	case "tools/call":
		return g.callTool(ctx, s, m, related)
	case "prompts/list":
		return g.listNamed(ctx, s, m, "prompts")
	case "resources/list":
		return g.listResources(ctx, s, m, "resources")
	case "resources/templates/list":
		return g.listResources(ctx, s, m, "resourceTemplates")
	case "prompts/get":
		return g.getPrompt(ctx, s, m, related)
	case "resources/read":
		return g.readResource(ctx, s, m, related)
	case "resources/subscribe", "resources/unsubscribe":
		return g.subscribe(ctx, s, m)
	case "completion/complete":
		return g.complete(ctx, s, m, related)
	case "logging/setLevel":
		return g.setLevel(ctx, s, m)
	}
	return jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeMethodNotFound, "method not found: "+m.Method, nil)
}

// forward sends one request to u on the session's conn, tracking it so
// progress, logs and server requests reach this request, and propagating
// a downstream cancellation.
// redact, when set, is the decision's: the upstream's notifications and
// requests related to this one are redacted with it too (conn.redactorFor).
func (g *Gateway) forward(ctx context.Context, s *session, u *Upstream, m *message, params json.RawMessage, related *responder, redact func(string) string) (json.RawMessage, *rpcError, error) {
	c, err := u.connFor(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := &inflight{upstream: u.cfg.Name, sess: s, downID: m.ID, upID: c.newID(), related: related, cancel: cancel, redact: redact}
	params = f.rewriteProgress(params, c)
	c.track(f)
	s.trackInflight(f)
	defer func() { c.untrack(f); s.untrackInflight(f) }()
	res, rerr, err := u.send(ctx, c, f.upID, m.Method, params, u.timeoutFor(m.Method))
	if err != nil && !c.dead.Load() && (ctx.Err() != nil || errors.Is(err, ErrUpstreamTimeout)) {
		f.sendCancel(c, "canceled by the client or timed out at the gateway")
	}
	return res, rerr, err
}

// rewriteProgress keeps the client's progress token unless another
// request in flight on the conn (a shared stdio session) already uses it;
// then it substitutes a unique one and maps it back on the way down.
func (f *inflight) rewriteProgress(params json.RawMessage, c *conn) json.RawMessage {
	var p map[string]json.RawMessage
	if json.Unmarshal(params, &p) != nil {
		return params
	}
	var meta map[string]json.RawMessage
	if json.Unmarshal(p["_meta"], &meta) != nil || meta["progressToken"] == nil {
		return params
	}
	f.downToken = meta["progressToken"]
	f.upToken = string(f.downToken)
	if !c.tokenTaken(f.upToken) {
		return params
	}
	up, _ := json.Marshal("nomos-p-" + f.upID)
	f.upToken = string(up)
	meta["progressToken"] = up
	p["_meta"], _ = json.Marshal(meta)
	out, _ := json.Marshal(p)
	return out
}

func (f *inflight) sendCancel(c *conn, reason string) {
	if f.cancelSent.Swap(true) {
		return
	}
	params, _ := json.Marshal(map[string]string{"requestId": f.upID, "reason": reason})
	ctx, cancel := context.WithTimeout(context.Background(), c.up.cfg.Timeouts.Call)
	defer cancel()
	_ = c.notify(ctx, "notifications/cancelled", params)
}

// cancelInflight maps a client's notifications/cancelled to the upstream.
func (s *session) cancelInflight(ctx context.Context, params json.RawMessage) {
	var p struct {
		RequestID json.RawMessage `json:"requestId"`
	}
	if json.Unmarshal(params, &p) != nil {
		return
	}
	s.mu.Lock()
	f := s.inflight[string(p.RequestID)]
	s.mu.Unlock()
	if f == nil {
		return
	}
	f.cancel() // first, so the answer is "canceled" whatever the upstream does
	if c := s.link(f.up()); c != nil {
		f.sendCancel(c, "client canceled")
	}
}

func (s *session) trackInflight(f *inflight) {
	s.mu.Lock()
	s.inflight[string(f.downID)] = f
	s.mu.Unlock()
}

func (s *session) untrackInflight(f *inflight) {
	s.mu.Lock()
	if s.inflight[string(f.downID)] == f {
		delete(s.inflight, string(f.downID))
	}
	s.mu.Unlock()
}
