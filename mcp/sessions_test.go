package mcp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/jsonrpc"
)

// TestSessionCapPerPrincipal: one principal cannot hold more live sessions
// than the cap; another principal is unaffected, and ending a session
// frees a slot (issue 8 #7).
func TestSessionCapPerPrincipal(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	_, c := newGateway(t, RouteConfig{MaxSessionsPerPrincipal: 3}, newTestGovernor(), u)
	clients := make([]*rawClient, 3)
	for i := range clients {
		clients[i] = &rawClient{t: t, url: c.url, principal: "alice"}
		clients[i].initialize()
	}
	over := &rawClient{t: t, url: c.url, principal: "alice"}
	resp := over.do(http.MethodPost, initBody, nil)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.HasPrefix(denyReason(t, resp), "session_limit: ") {
		t.Fatalf("fourth session of alice: status %d, want 429 session_limit", resp.StatusCode)
	}
	(&rawClient{t: t, url: c.url, principal: "bob"}).initialize()
	if resp := clients[0].do(http.MethodDelete, "", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	over.initialize()
}

// TestInitializeRateLimited: initialize is paced per principal.
func TestInitializeRateLimited(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	g, c := newGateway(t, RouteConfig{InitializePerMinute: 2}, newTestGovernor(), u)
	now := time.Unix(1_800_000_000, 0)
	g.now = func() time.Time { return now }
	for range 2 {
		(&rawClient{t: t, url: c.url, principal: "alice"}).initialize()
	}
	resp := (&rawClient{t: t, url: c.url, principal: "alice"}).do(http.MethodPost, initBody, nil)
	if resp.StatusCode != http.StatusTooManyRequests || !strings.HasPrefix(denyReason(t, resp), "rate_limited: ") {
		t.Fatalf("third initialize within the minute: %d, want 429 rate_limited", resp.StatusCode)
	}
	(&rawClient{t: t, url: c.url, principal: "bob"}).initialize()
	now = now.Add(31 * time.Second) // one token back
	(&rawClient{t: t, url: c.url, principal: "alice"}).initialize()
}

// TestInitializeParamsCapped: a session does not keep unbounded client
// params.
func TestInitializeParamsCapped(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	_, c := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	big := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"%s","version":"1"}}}`,
		strings.Repeat("x", maxInitParamsBytes))
	resp := c.do(http.MethodPost, big, map[string]string{"Accept": "application/json"})
	if resp.Header.Get(HeaderSessionID) != "" {
		t.Fatal("a session was opened for oversized initialize params")
	}
	var m message
	if err := decodeJSON(resp, &m); err != nil || m.Error == nil || m.Error.Code != jsonrpc.CodeInvalidParams {
		t.Fatalf("oversized params: %v %+v", err, m.Error)
	}
}

// TestIdleExpiryIsProportional: expiring idle sessions examines the ones
// that expire plus one, not every session, and keeps the ones in use.
func TestIdleExpiryIsProportional(t *testing.T) {
	st := newSessionStore()
	start := time.Unix(1_800_000_000, 0)
	const n, ttl = 10000, time.Minute
	all := make([]*session, n)
	for i := range all {
		s := &session{id: fmt.Sprint("s", i), identity: Identity{Principal: "p"}}
		st.add(s, 0)
		st.touch(s, start)
		all[i] = s
	}
	later := start.Add(30 * time.Second)
	for _, s := range all[3:] { // every session but the first three is used again
		st.touch(s, later)
	}
	st.visited = 0
	expired := st.sweep(start.Add(ttl+time.Second), ttl)
	if len(expired) != 3 || expired[0] != all[0] || expired[2] != all[2] {
		t.Fatalf("expired %d sessions, want the three idle ones", len(expired))
	}
	if st.visited != 4 {
		t.Fatalf("sweep examined %d sessions to expire 3 of %d; want 4", st.visited, n)
	}
	if st.get("s0") != nil || st.get("s3") == nil || st.count("p") != n-3 {
		t.Fatalf("store after sweep: s0=%v s3=%v count=%d", st.get("s0"), st.get("s3"), st.count("p"))
	}
}

func decodeJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
