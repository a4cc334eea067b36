package mcp

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/policy"
)

func denyReason(t *testing.T, resp *http.Response) string {
	t.Helper()
	var body struct {
		Decision string `json:"decision"`
		Reason   string `json:"reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Decision != policy.Deny {
		t.Fatalf("status %d: not the stable deny shape: %v %+v", resp.StatusCode, err, body)
	}
	return body.Reason
}

func TestAuthenticationComesFirst(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	gov := newTestGovernor()
	_, c := newGateway(t, RouteConfig{}, gov, u)
	c.principal = ""
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		resp := c.do(method, initBody, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: status %d, want 401", method, resp.StatusCode)
		}
		if r := denyReason(t, resp); !strings.HasPrefix(r, "auth_error: ") {
			t.Fatalf("reason %q", r)
		}
	}
	if gov.requestCount() != 0 {
		t.Fatal("an unauthenticated request reached the governor")
	}
}

func TestSessionBinding(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	_, c := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	c.initialize()
	raw, err := base64.RawURLEncoding.DecodeString(c.session)
	if err != nil || len(raw) < 16 {
		t.Fatalf("session id %q is not 128+ random bits", c.session)
	}
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	cases := []struct {
		name, principal, session string
		status                   int
	}{
		{"own session", "alice", c.session, http.StatusOK},
		{"other identity", "mallory", c.session, http.StatusForbidden},
		{"unknown session", "alice", "nope", http.StatusNotFound},
		{"missing session", "alice", "", http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			other := &rawClient{t: t, url: c.url, principal: tc.principal, session: tc.session}
			if resp := other.do(http.MethodPost, list, nil); resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	if resp := c.do(http.MethodDelete, "", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if resp := c.do(http.MethodPost, list, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("after DELETE: %d, want 404", resp.StatusCode)
	}
}

func TestHardening(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	route := RouteConfig{MaxBodyBytes: 4096, AllowedHosts: []string{"127.0.0.1"}}
	_, c := newGateway(t, route, newTestGovernor(), u)
	c.initialize()
	cases := []struct {
		name   string
		body   string
		hdr    map[string]string
		status int
	}{
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, nil, http.StatusBadRequest},
		{"duplicate key", `{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}`, nil, http.StatusBadRequest},
		{"case-variant key", `{"jsonrpc":"2.0","id":1,"method":"ping","Method":"tools/call"}`, nil, http.StatusBadRequest},
		{"case-variant only", `{"jsonrpc":"2.0","id":1,"METHOD":"ping"}`, nil, http.StatusBadRequest},
		{"nested duplicate", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"a","TEXT":"b"}}}`, nil, http.StatusBadRequest},
		{"bad id", `{"jsonrpc":"2.0","id":{},"method":"ping"}`, nil, http.StatusBadRequest},
		{"body too large", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", 5000) + `"}}`, nil, http.StatusRequestEntityTooLarge},
		{"Mcp-Method mismatch", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, map[string]string{"Mcp-Method": "tools/list"}, http.StatusBadRequest},
		{"Mcp-Name mismatch", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, map[string]string{"Mcp-Name": "other"}, http.StatusBadRequest},
		{"headers match", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "echo"}, http.StatusOK},
		{"foreign origin", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"loopback origin", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Origin": "http://localhost:3000"}, http.StatusOK},
		{"unsupported protocol version", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Mcp-Protocol-Version": "1999-01-01"}, http.StatusBadRequest},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}`, nil, http.StatusAccepted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if resp := c.do(http.MethodPost, tc.body, tc.hdr); resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	t.Run("foreign host", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, c.url, strings.NewReader(initBody))
		req.Host = "rebind.example"
		req.Header.Set("X-Test-Principal", "alice")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403", resp.StatusCode)
		}
	})
	t.Run("method not allowed", func(t *testing.T) {
		if resp := c.do(http.MethodPut, "", nil); resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

func TestGetStreamNeedsSession(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	_, c := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	if resp := c.do(http.MethodGet, "", map[string]string{"Accept": "text/event-stream"}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
	c.initialize()
	c.session = "unknown"
	if resp := c.do(http.MethodGet, "", map[string]string{"Accept": "text/event-stream"}); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
}

// TestLoopbackHostDefault: on a loopback listener without allowed_hosts,
// only loopback Host names are accepted (DNS-rebinding default).
func TestLoopbackHostDefault(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	_, c := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	for host, status := range map[string]int{"rebind.example": http.StatusForbidden, "localhost": http.StatusOK} {
		req, _ := http.NewRequest(http.MethodPost, c.url, strings.NewReader(initBody))
		req.Host = host
		req.Header.Set("X-Test-Principal", "alice")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Fatalf("Host %s: status %d, want %d", host, resp.StatusCode, status)
		}
	}
}
