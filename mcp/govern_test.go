package mcp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/policy"
)

// TestPathRecordsEveryRefusal: every refusal of a door is recorded with
// the door's transport, and a denied request is completed too.
func TestPathRecordsEveryRefusal(t *testing.T) {
	for _, transport := range []string{DownstreamStreamableHTTP, DownstreamStdio} {
		t.Run(transport, func(t *testing.T) {
			u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
			gov := newTestGovernor()
			gov.hidden["secret"] = true
			gov.set("fail", AuthzResult{Decision: policy.Deny, Reason: "deny_by_rule"})
			_, c := newGateway(t, RouteConfig{Transport: transport}, gov, u)
			c.initialize()
			c.call("tools/call", `{"name":"no_such_tool","arguments":{}}`)
			c.call("tools/call", `{"name":"secret","arguments":{}}`)
			c.call("tools/call", `{"name":"echo","arguments":{"text":7}}`)
			c.call("tools/call", `{"name":"fail","arguments":{}}`)
			gov.mu.Lock()
			defer gov.mu.Unlock()
			want := []string{"mcp://a/no_such_tool", "mcp://a/secret", "mcp://a/echo"}
			if len(gov.rejected) != len(want) {
				t.Fatalf("rejections = %+v, want %d", gov.rejected, len(want))
			}
			for i, r := range gov.rejected {
				if r.req.Resource != want[i] || r.class != audit.ResultValidationError || r.req.Metadata["downstream_transport"] != transport {
					t.Errorf("rejection %d = %+v %s %q", i, r.req, r.class, r.reason)
				}
			}
			last := gov.requests[len(gov.requests)-1]
			if last.Metadata["downstream_transport"] != transport || len(gov.completed) == 0 || gov.completed[len(gov.completed)-1].Classification != "" {
				t.Fatalf("a denied call must be completed without an outcome: %+v %+v", last.Metadata, gov.completed)
			}
		})
	}
}

// TestHiddenAnswersAsUnknown: for every governed surface, a name hidden
// by policy answers byte for byte as a name that does not exist, whatever
// its arguments (issue 8 #15).
func TestHiddenAnswersAsUnknown(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	gov := newTestGovernor()
	gov.hidden["secret"] = true
	// Policy allows no prompt: greet exists upstream, nope does not.
	for _, r := range []string{"mcp://a/prompt/greet", "mcp://a/prompt/nope"} {
		gov.hidden[r] = true
	}
	_, c := newGateway(t, RouteConfig{}, gov, u)
	c.initialize()
	cases := []struct{ method, hidden, unknown, name string }{
		{"tools/call", `{"name":"secret","arguments":{"text":7,"bogus":[1]}}`, `{"name":"nope","arguments":{"text":7,"bogus":[1]}}`, "secret"},
		{"tools/call", `{"name":"secret"}`, `{"name":"nope"}`, "secret"},
		{"prompts/get", `{"name":"greet","arguments":{"x":"y"}}`, `{"name":"nope","arguments":{"x":"y"}}`, "greet"},
		{"completion/complete", `{"ref":{"type":"ref/prompt","name":"greet"},"argument":{"name":"a","value":"b"}}`,
			`{"ref":{"type":"ref/prompt","name":"nope"},"argument":{"name":"a","value":"b"}}`, "greet"},
	}
	before := gov.requestCount()
	for _, tc := range cases {
		h, _ := json.Marshal(c.call(tc.method, tc.hidden))
		n, _ := json.Marshal(c.call(tc.method, tc.unknown))
		if got, want := string(h), strings.ReplaceAll(string(n), "nope", tc.name); got != want || !strings.Contains(got, "-32602") {
			t.Errorf("%s: hidden answers %s, unknown %s", tc.method, h, n)
		}
	}
	if gov.requestCount() != before {
		t.Fatal("a hidden name reached policy")
	}
	list, _ := json.Marshal(c.call("prompts/list", `{}`))
	if strings.Contains(string(list), "greet") {
		t.Fatalf("prompts/list shows a hidden prompt: %s", list)
	}
}

// TestClientsSeeNoInternals: an upstream that went away is reported by
// class and name, never by address (issue 8 #12), and the refusal is
// recorded as UPSTREAM_UNAVAILABLE.
func TestClientsSeeNoInternals(t *testing.T) {
	s := newTestServer("a", nil)
	srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	u := startedUpstream(t, UpstreamConfig{Name: "a", URL: srv.URL, Breaker: BreakerConfig{Disabled: true}})
	gov := newTestGovernor()
	_, c := newGateway(t, RouteConfig{}, gov, u)
	c.initialize()
	closeServer(srv)
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, call := range []string{`{"name":"echo","arguments":{"text":"x"}}`, `{"name":"nope"}`} {
		m := c.call("tools/call", call)
		raw, _ := json.Marshal(m)
		if strings.Contains(string(raw), host) || strings.Contains(string(raw), "127.0.0.1") || !strings.Contains(string(raw), "UPSTREAM_UNAVAILABLE") {
			t.Fatalf("%s: the client sees %s", call, raw)
		}
	}
	gov.mu.Lock()
	defer gov.mu.Unlock()
	if n := len(gov.rejected); n == 0 || gov.rejected[n-1].class != audit.ResultUpstreamUnavailable {
		t.Fatalf("the refusal before policy was not recorded as UPSTREAM_UNAVAILABLE: %+v", gov.rejected)
	}
}

// TestNewCallRequestIsTheOneShape: any door building an mcp.call gets the
// same resource and canonical params, so approvals and audit agree.
func TestNewCallRequestIsTheOneShape(t *testing.T) {
	a, err := NewCallRequest(Identity{Principal: "p"}, "Retail", "refund", json.RawMessage(`{"b":1, "a":{"y":2,"x":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewCallRequest(Identity{Principal: "p"}, "Retail", "refund", json.RawMessage(`{"a":{"x":1,"y":2},"b":1}`))
	if a.Resource != "mcp://retail/refund" || string(a.Params) != string(b.Params) ||
		!strings.Contains(string(a.Params), `"tool_arguments":{"a":{"x":1,"y":2},"b":1}`) || !strings.Contains(string(a.Params), `"upstream_server":"Retail"`) {
		t.Fatalf("requests differ or are misshapen: %s %s / %s", a.Resource, a.Params, b.Params)
	}
	if _, err := NewCallRequest(Identity{}, "r", "t", json.RawMessage(`{"a":1,"a":2}`)); err == nil {
		t.Fatal("duplicate keys in arguments must be refused")
	}
}
