package mcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/internal/errcode"
	"github.com/caddy-nomos/nomos/internal/jsonrpc"
	"github.com/caddy-nomos/nomos/policy"
)

// Header names of the Streamable HTTP transport.
const (
	HeaderSessionID       = "Mcp-Session-Id"
	HeaderProtocolVersion = "Mcp-Protocol-Version"
	headerMethod          = "Mcp-Method"
	headerName            = "Mcp-Name"
)

// SupportedVersions are the downstream protocol versions, newest first.
var SupportedVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26"}

// keepAliveEvery is the SSE comment cadence that keeps idle streams open.
const keepAliveEvery = 25 * time.Second

// ServeHTTP serves POST, GET and DELETE on the MCP endpoint.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet && r.Method != http.MethodDelete {
		w.Header().Set("Allow", "GET, POST, DELETE")
		httpDeny(w, http.StatusMethodNotAllowed, errcode.Method, "use POST, GET or DELETE")
		return
	}
	if reason := checkOriginHost(r, g.route.AllowedOrigins, g.route.AllowedHosts); reason != "" {
		httpDeny(w, http.StatusForbidden, errcode.Forbidden, reason)
		return
	}
	body, ok := g.readBody(w, r)
	if !ok {
		return
	}
	if g.forwardForeign(w, r, body) {
		return
	}
	id, err := g.auth(r, body)
	if errors.Is(err, ErrStateUnavailable) {
		httpDeny(w, http.StatusServiceUnavailable, errcode.StateUnavailable, "shared state unavailable; retry later")
		return
	}
	if err != nil {
		httpDeny(w, http.StatusUnauthorized, errcode.Auth, err.Error())
		return
	}
	switch r.Method {
	case http.MethodPost:
		g.servePost(w, r, id, body)
	case http.MethodGet:
		g.serveGet(w, r, id)
	default:
		g.serveDelete(w, r, id)
	}
}

// httpDeny writes the stable Nomos HTTP error shape, the same as the HTTP
// API's: one code from errcode, then the message.
func httpDeny(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"decision": policy.Deny, "reason": errcode.Reason(code, msg)})
}

func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if r.Method != http.MethodPost {
		return nil, true
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.route.MaxBodyBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		httpDeny(w, http.StatusRequestEntityTooLarge, errcode.TooLarge, fmt.Sprintf("body exceeds %d bytes", g.route.MaxBodyBytes))
		return nil, false
	}
	if err != nil {
		httpDeny(w, http.StatusBadRequest, errcode.Validation, "could not read body")
		return nil, false
	}
	return body, true
}

// checkOriginHost is the DNS-rebinding defence: a browser Origin must be
// allowed (loopback by default) and the Host must match allowed_hosts.
func checkOriginHost(r *http.Request, allowedOrigins, allowedHosts []string) string {
	if len(allowedHosts) > 0 && !hostMatches(hostOnly(r.Host), allowedHosts) {
		return "host not allowed"
	}
	if len(allowedHosts) == 0 && servedOnLoopback(r) && !loopbackHost(hostOnly(r.Host)) {
		return "host not allowed on a loopback listener"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	if slices.Contains(allowedOrigins, origin) || slices.Contains(allowedOrigins, "*") {
		return ""
	}
	if len(allowedOrigins) == 0 && loopbackOrigin(origin) {
		return ""
	}
	return "origin not allowed"
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// hostMatches reports whether host matches one of globs, case-folded,
// with path.Match (the same on every OS). It is the one Host glob of the
// package: the Host header, upstream URLs and their redirects.
func hostMatches(host string, globs []string) bool {
	for _, glob := range globs {
		if ok, _ := path.Match(strings.ToLower(glob), strings.ToLower(host)); ok {
			return true
		}
	}
	return false
}

func loopbackOrigin(origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && loopbackHost(u.Hostname())
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// servedOnLoopback reports whether the request came in on a loopback
// listener: there, without allowed_hosts, only loopback Host names are
// accepted (the DNS-rebinding default).
func servedOnLoopback(r *http.Request) bool {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	host, _, err := net.SplitHostPort(addr.String())
	return err == nil && loopbackHost(host)
}

// servePost handles one JSON-RPC message.
func (g *Gateway) servePost(w http.ResponseWriter, r *http.Request, id Identity, body []byte) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "application/json" {
			httpDeny(w, http.StatusUnsupportedMediaType, errcode.Validation, "Content-Type must be application/json")
			return
		}
	}
	m, err := decodeMessage(body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, jsonrpc.ErrorResponse(nil, jsonrpc.CodeInvalidRequest, "invalid json-rpc message: "+err.Error(), nil))
		return
	}
	if reason := checkRoutingHeaders(r, m); reason != "" {
		writeJSON(w, http.StatusBadRequest, jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeInvalidRequest, reason, nil))
		return
	}
	if m.IsRequest() && m.Method == "initialize" {
		g.serveInitialize(w, r, id, m)
		return
	}
	s, ok := g.sessionFor(w, r, id, m)
	if !ok {
		return
	}
	g.dispatch(w, r, s, m)
}

// checkRoutingHeaders compares Mcp-Method and Mcp-Name, when sent, with
// the body, so an intermediary routing on headers sees the truth.
func checkRoutingHeaders(r *http.Request, m *message) string {
	if h := r.Header.Get(headerMethod); h != "" && h != m.Method {
		return "Mcp-Method header does not match the body"
	}
	if h := r.Header.Get(headerName); h != "" && h != messageName(m) {
		return "Mcp-Name header does not match the body"
	}
	return ""
}

// messageName is what a request names, read from the exact member the
// specification gives its method (the one a server acts on): the tool or
// prompt "name" of tools/call and prompts/get, the resource "uri" of
// resources/read, subscribe and unsubscribe; "" for other methods or when
// the member is not a string. A decision is taken on this value only, so
// a second member (a "name" beside a resource's "uri") never stands in for
// the one the server reads.
func messageName(m *message) string {
	var member string
	switch m.Method {
	case "tools/call", "prompts/get":
		member = "name"
	case "resources/read", "resources/subscribe", "resources/unsubscribe":
		member = "uri"
	default:
		return ""
	}
	var p map[string]json.RawMessage
	var v string
	if json.Unmarshal(m.Params, &p) != nil || json.Unmarshal(p[member], &v) != nil {
		return ""
	}
	return v
}

// sessionFor finds the session of a request: missing 400, unknown or
// terminated 404, another identity 403.
func (g *Gateway) sessionFor(w http.ResponseWriter, r *http.Request, id Identity, m *message) (*session, bool) {
	sid := r.Header.Get(HeaderSessionID)
	if sid == "" {
		if m != nil && m.IsRequest() && m.Method == "server/discover" {
			writeJSON(w, http.StatusOK, jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeMethodNotFound, "server/discover is not supported; use initialize", nil))
			return nil, false
		}
		httpDeny(w, http.StatusBadRequest, errcode.InvalidSession, "missing Mcp-Session-Id")
		return nil, false
	}
	s := g.sessions.get(sid)
	if s == nil {
		s = g.adopted(sid)
	}
	now := g.now()
	if s != nil && (s.expired(now, g.route.SessionTTL) || len(g.ups) == 1 && s.deadLink()) {
		g.endSession(s)
		s = nil
	}
	if s == nil {
		httpDeny(w, http.StatusNotFound, errcode.InvalidSession, "unknown or terminated session")
		return nil, false
	}
	if s.identity != id {
		httpDeny(w, http.StatusForbidden, errcode.SessionIdentity, "the session belongs to another identity")
		return nil, false
	}
	if v := r.Header.Get(HeaderProtocolVersion); v != "" && !slices.Contains(SupportedVersions, v) {
		httpDeny(w, http.StatusBadRequest, errcode.Validation, "unsupported Mcp-Protocol-Version")
		return nil, false
	}
	g.sessions.touch(s, now)
	g.shareTouch(r.Context(), s, now)
	return s, true
}

func (g *Gateway) endSession(s *session) {
	if g.sessions.remove(s.id) != nil {
		g.shareRelease(s)
	}
	s.close()
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// dispatch answers a notification or response with 202 and a request with
// JSON or an SSE stream.
func (g *Gateway) dispatch(w http.ResponseWriter, r *http.Request, s *session, m *message) {
	switch {
	case m.IsResponse():
		s.answer(m)
		w.WriteHeader(http.StatusAccepted)
	case m.IsNotification():
		g.handleNotification(r.Context(), s, m)
		w.WriteHeader(http.StatusAccepted)
	case acceptsSSE(r):
		g.serveSSE(w, r, s, m)
	default:
		writeJSON(w, http.StatusOK, g.handleRequest(r.Context(), s, m, nil))
	}
}

func acceptsSSE(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// serveSSE answers a request with an SSE stream that carries the related
// server messages and then the response.
func (g *Gateway) serveSSE(w http.ResponseWriter, r *http.Request, s *session, m *message) {
	flusher, ok := flusherOf(w)
	if !ok {
		writeJSON(w, http.StatusOK, g.handleRequest(r.Context(), s, m, nil))
		return
	}
	resp := newResponder()
	final := make(chan []byte, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				g.log.Error("mcp gateway panicked", "where", "request", "panic", fmt.Sprint(p))
				final <- jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeInternalError, "internal error", nil)
			}
		}()
		final <- g.handleRequest(r.Context(), s, m, resp)
	}()
	sseHeaders(w)
	flusher.Flush()
	for {
		select {
		case msg := <-resp.ch:
			writeEvent(w, flusher, msg)
		case msg := <-final:
			resp.finish()
			drain(w, flusher, resp)
			writeEvent(w, flusher, msg)
			return
		}
	}
}

// flusherOf finds a way to flush w. Wrapping writers (Caddy's among them)
// often offer only FlushError and Unwrap, not Flush; a ResponseController
// walks that chain.
func flusherOf(w http.ResponseWriter) (http.Flusher, bool) {
	if f, ok := w.(http.Flusher); ok {
		return f, true
	}
	if !canFlush(w) {
		return nil, false
	}
	return controllerFlusher{http.NewResponseController(w)}, true
}

type controllerFlusher struct{ rc *http.ResponseController }

func (c controllerFlusher) Flush() { _ = c.rc.Flush() }

func canFlush(w http.ResponseWriter) bool {
	for w != nil {
		switch t := w.(type) {
		case http.Flusher, interface{ FlushError() error }:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
	return false
}

func drain(w http.ResponseWriter, f http.Flusher, resp *responder) {
	for {
		select {
		case msg := <-resp.ch:
			writeEvent(w, f, msg)
		default:
			return
		}
	}
}

func sseHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

func writeEvent(w http.ResponseWriter, f http.Flusher, msg []byte) {
	_, _ = fmt.Fprintf(w, "event: message\ndata: %s\n\n", msg)
	f.Flush()
}

// serveGet streams server-initiated messages of a session.
func (g *Gateway) serveGet(w http.ResponseWriter, r *http.Request, id Identity) {
	if !acceptsSSE(r) {
		httpDeny(w, http.StatusNotAcceptable, errcode.Validation, "GET needs Accept: text/event-stream")
		return
	}
	s, ok := g.sessionFor(w, r, id, nil)
	if !ok {
		return
	}
	flusher, ok := flusherOf(w)
	if !ok {
		httpDeny(w, http.StatusNotAcceptable, errcode.Validation, "this server cannot stream responses")
		return
	}
	if !s.claimStream() {
		httpDeny(w, http.StatusConflict, errcode.Conflict, "the session already has a GET stream")
		return
	}
	defer s.releaseStream()
	sseHeaders(w)
	flusher.Flush()
	g.pumpStream(w, flusher, r, s)
}

func (g *Gateway) pumpStream(w http.ResponseWriter, f http.Flusher, r *http.Request, s *session) {
	tick := time.NewTicker(keepAliveEvery)
	defer tick.Stop()
	for {
		select {
		case msg := <-s.stream:
			writeEvent(w, f, msg)
		case <-tick.C:
			_, _ = io.WriteString(w, ": keep-alive\n\n")
			f.Flush()
		case <-s.done:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// serveDelete terminates a session.
func (g *Gateway) serveDelete(w http.ResponseWriter, r *http.Request, id Identity) {
	s, ok := g.sessionFor(w, r, id, nil)
	if !ok {
		return
	}
	g.endSession(s)
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) recoverPanic(where string) {
	if r := recover(); r != nil {
		g.log.Error("mcp gateway panicked", "where", where, "panic", fmt.Sprint(r))
	}
}
