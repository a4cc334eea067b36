package mcp

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/jsonrpc"
)

var logLevels = []string{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

func logLevelIndex(level string) int {
	for i, l := range logLevels {
		if l == level {
			return i
		}
	}
	return -1
}

// onNotification routes an upstream notification to the downstream
// session(s) it belongs to.
func (c *conn) onNotification(n mcpgo.JSONRPCNotification) {
	defer c.up.recoverPanic("notification")
	raw, err := json.Marshal(n)
	if err != nil {
		return
	}
	var m message
	if json.Unmarshal(raw, &m) != nil {
		return
	}
	switch {
	case m.Method == "notifications/progress":
		c.routeProgress(&m)
	case m.Method == "notifications/cancelled":
		c.routeCancelled(&m)
	case m.Method == "notifications/message":
		c.routeLog(&m, raw)
	case strings.HasSuffix(m.Method, "/list_changed"):
		c.routeListChanged(&m, raw)
	case m.Method == "notifications/resources/updated":
		c.routeResourceUpdated(&m, raw)
	case c.dedicated != nil:
		if msg := RedactMessage(raw, c.redactorFor(c.dedicated)); msg != nil {
			c.dedicated.push(msg)
		}
	}
}

func (c *conn) routeProgress(m *message) {
	var p map[string]json.RawMessage
	if json.Unmarshal(m.Params, &p) != nil {
		return
	}
	token := string(p["progressToken"])
	c.mu.Lock()
	f := c.progress[token]
	c.mu.Unlock()
	if f == nil {
		return
	}
	p["progressToken"] = f.downToken
	params, _ := json.Marshal(p)
	if msg := RedactMessage(jsonrpc.Notification(m.Method, json.RawMessage(params)), c.redactorFor(f.sess)); msg != nil {
		f.sess.deliver(f.related, msg)
	}
}

// routeCancelled forwards the upstream's cancellation of one of its own
// requests to the downstream session that received it.
func (c *conn) routeCancelled(m *message) {
	var p map[string]json.RawMessage
	if json.Unmarshal(m.Params, &p) != nil {
		return
	}
	var upID any
	_ = json.Unmarshal(p["requestId"], &upID)
	key := mcpgo.NewRequestId(upID).String()
	c.mu.Lock()
	r := c.srvReqs[key]
	c.mu.Unlock()
	if r == nil {
		return
	}
	p["requestId"] = json.RawMessage(r.downID)
	params, _ := json.Marshal(p)
	if msg := RedactMessage(jsonrpc.Notification(m.Method, json.RawMessage(params)), c.redactorFor(r.sess)); msg != nil {
		r.sess.push(msg) // its reason is the server's text
	}
}

// routeLog delivers a log message to the one session with requests in
// flight (over a shared conn there is no other attribution), filtered by
// the level that session set.
func (c *conn) routeLog(m *message, raw []byte) {
	s := c.onlyInflightSession()
	if s == nil {
		return
	}
	var p struct {
		Level string `json:"level"`
	}
	_ = json.Unmarshal(m.Params, &p)
	s.mu.Lock()
	min := s.logLevel
	s.mu.Unlock()
	if logLevelIndex(p.Level) < min {
		return
	}
	var related *responder
	if f := c.latestInflight(); f != nil && f.sess == s {
		related = f.related
	}
	if msg := RedactMessage(raw, c.redactorFor(s)); msg != nil {
		s.deliver(related, msg)
	}
}

func (c *conn) routeListChanged(m *message, raw []byte) {
	if m.Method == "notifications/tools/list_changed" {
		c.catalog.invalidate()
		if c.dedicated == nil {
			c.up.refreshToolsSoon()
		}
	}
	for _, s := range c.sessionsOf() {
		s.push(raw)
	}
}

func (c *conn) routeResourceUpdated(m *message, raw []byte) {
	var p struct {
		URI string `json:"uri"`
	}
	_ = json.Unmarshal(m.Params, &p)
	for _, s := range c.sessionsOf() {
		if s.subscribedTo(p.URI, c.up.cfg.Name) {
			s.push(raw)
		}
	}
}

func (s *session) subscribedTo(uri, upstream string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subs[uri] == upstream
}

// onRequest relays an upstream→client request (sampling, elicitation,
// roots, ping) to the downstream session it belongs to, governing sampling
// and elicitation first.
func (c *conn) onRequest(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	defer c.up.recoverPanic("request")
	if req.Method == "ping" {
		return &transport.JSONRPCResponse{JSONRPC: "2.0", ID: req.ID, Result: json.RawMessage("{}")}, nil
	}
	params, _ := json.Marshal(req.Params)
	if req.Params == nil {
		params = nil
	}
	s, related := c.targetOf()
	if s == nil {
		return rpcErrorResponse(req.ID, jsonrpc.CodeInternalError, "no single downstream session to relay "+req.Method+" to"), nil
	}
	if !s.capabilities().declares(req.Method, params) {
		c.up.log.Warn("mcp upstream sent a request the client did not declare", "upstream_method", req.Method, "downstream_session_id", s.id)
		e := undeclaredError(req.Method)
		return rpcErrorResponse(req.ID, e.Code, e.Message), nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.up.cfg.Timeouts.Call)
	defer cancel()
	g := s.gw.Load()
	var resp *transport.JSONRPCResponse
	e := g.governServerRequest(ctx, s, c.up.cfg.Name, req.Method, params, func(redact func(string) string) Outcome {
		if params != nil {
			related := c.redactorFor(s) // the calls it serves, and the app's rules
			own := redact
			redact = func(x string) string {
				if own != nil {
					x = own(x)
				}
				if related != nil {
					x = related(x)
				}
				return x
			}
			if params = RedactParams(params, redact); params == nil {
				resp = rpcErrorResponse(req.ID, jsonrpc.CodeInvalidParams, "params could not be read")
				return serverRequestOutcome(resp)
			}
		}
		resp = c.relayServerRequest(ctx, s, related, req, params)
		return serverRequestOutcome(resp)
	})
	if e != nil {
		return &transport.JSONRPCResponse{JSONRPC: "2.0", ID: req.ID, Error: &mcpgo.JSONRPCErrorDetails{Code: e.Code, Message: e.Message, Data: e.Data}}, nil
	}
	return resp, nil
}

// serverRequestOutcome classifies the client's answer to a relayed request.
func serverRequestOutcome(resp *transport.JSONRPCResponse) Outcome {
	if resp.Error != nil {
		return Outcome{Classification: audit.ResultUpstreamError, ErrorClass: "rpc"}
	}
	return Outcome{Classification: audit.ResultSuccess}
}

// targetOf picks the downstream session of an upstream→client request. A
// shared stdio conn carries no attribution, so the request goes to the one
// session with requests in flight, and is refused (never guessed) when
// several sessions are active: a wrong guess would leak one client's data
// to another.
func (c *conn) targetOf() (*session, *responder) {
	s := c.onlyInflightSession()
	if s == nil && c.dedicated != nil {
		s = c.dedicated
	}
	if s == nil {
		return nil, nil
	}
	if f := c.latestInflight(); f != nil && f.sess == s {
		return s, f.related
	}
	return s, nil
}

func (c *conn) relayServerRequest(ctx context.Context, s *session, related *responder, req transport.JSONRPCRequest, params json.RawMessage) *transport.JSONRPCResponse {
	key := req.ID.String()
	c.mu.Lock()
	c.srvReqs[key] = &srvRequest{sess: s}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.srvReqs, key)
		c.mu.Unlock()
	}()
	m, err := s.requestTracked(ctx, related, req.Method, params, func(downID string) {
		c.mu.Lock()
		c.srvReqs[key].downID = downID
		c.mu.Unlock()
	})
	if err != nil {
		return rpcErrorResponse(req.ID, jsonrpc.CodeInternalError, "relay "+req.Method+": "+err.Error())
	}
	if m.Error != nil {
		return &transport.JSONRPCResponse{JSONRPC: "2.0", ID: req.ID, Error: &mcpgo.JSONRPCErrorDetails{Code: m.Error.Code, Message: m.Error.Message, Data: m.Error.Data}}
	}
	return &transport.JSONRPCResponse{JSONRPC: "2.0", ID: req.ID, Result: m.Result}
}

func rpcErrorResponse(id mcpgo.RequestId, code int, msg string) *transport.JSONRPCResponse {
	return &transport.JSONRPCResponse{JSONRPC: "2.0", ID: id, Error: &mcpgo.JSONRPCErrorDetails{Code: code, Message: msg}}
}
