package mcp

import (
	"net/http"
	"testing"
)

// TestAdoptSessionsOnReload: a reload that keeps the upstream keeps the
// client's session; one that replaces it does not.
func TestAdoptSessionsOnReload(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	g1, c := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	c.initialize()

	g2, c2 := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	if n := g2.AdoptSessions(g1); n != 1 {
		t.Fatalf("adopted %d sessions, want 1", n)
	}
	_ = g1.Close()
	c2.session = c.session
	if text, isErr := c2.callTool("echo", `{"text":"still"}`); isErr || text != "a:still" {
		t.Fatalf("after reload: %q", text)
	}

	other := inprocUpstream(t, "a", newTestServer("a2", nil), nil)
	g3, _ := newGateway(t, RouteConfig{}, newTestGovernor(), other)
	if n := g3.AdoptSessions(g2); n != 0 {
		t.Fatalf("adopted %d sessions across a changed upstream", n)
	}
}

// TestEndedUpstreamSessionEndsDownstream: when the remote upstream forgets
// the session, the client gets 404 and starts over.
func TestEndedUpstreamSessionEndsDownstream(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	g, c := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	c.initialize()
	g.sessions.get(c.session).link("a").markDead()
	if resp := c.do(http.MethodPost, `{"jsonrpc":"2.0","id":3,"method":"ping"}`, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
	c.initialize()
	if text, _ := c.callTool("echo", `{"text":"again"}`); text != "a:again" {
		t.Fatalf("after re-initialize: %q", text)
	}
}

// TestDefaultClientFallsBackToInitialize: the Go SDK client tries
// server/discover (2026-07-28) first; the gateway answers method not found
// and the client initializes with 2025-11-25.
func TestDefaultClientFallsBackToInitialize(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	_, c := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	cs := connectClient(t, c.url, "alice", "", nil)
	if got := cs.InitializeResult().ProtocolVersion; got != "2025-11-25" {
		t.Fatalf("negotiated %q", got)
	}
}

// TestOldGatewayFindsAdoptedSessions: between a reload's provisioning
// (which moves the sessions) and the switch to the new config, requests
// still reach the old gateway; they must find their session, not a 404.
func TestOldGatewayFindsAdoptedSessions(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	g1, c := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	c.initialize()
	g2, _ := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	g3, _ := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	if n := g2.AdoptSessions(g1); n != 1 {
		t.Fatalf("adopted %d", n)
	}
	if n := g3.AdoptSessions(g2); n != 1 {
		t.Fatalf("adopted again %d", n)
	}
	if text, isErr := c.callTool("echo", `{"text":"old"}`); isErr || text != "a:old" {
		t.Fatalf("request on the replaced gateway: %q", text)
	}
}
