package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

func toolNames(t *testing.T, c *rawClient) []string {
	t.Helper()
	m := c.call("tools/list", `{}`)
	var r struct {
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	}
	if m.Error != nil || json.Unmarshal(m.Result, &r) != nil {
		t.Fatalf("tools/list: %+v", m)
	}
	var names []string
	for _, tool := range r.Tools {
		names = append(names, tool.Name)
	}
	sort.Strings(names)
	return names
}

func TestMultipleUpstreamsPrefixesAndViews(t *testing.T) {
	a := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	b := inprocUpstream(t, "b", newTestServer("b", nil), nil)
	route := RouteConfig{Upstreams: []string{"a", "b"}, Include: []string{"*_echo", "b_*"}, Exclude: []string{"b_env", "b_hang"}}
	_, c := newGateway(t, route, newTestGovernor(), a, b)
	c.initialize()
	if got, want := strings.Join(toolNames(t, c), ","), "a_echo,b_echo,b_fail,b_sample,b_secret"; got != want {
		t.Fatalf("tools = %s, want %s", got, want)
	}
	if text, isErr := c.callTool("b_echo", `{"text":"hi"}`); isErr || text != "b:hi" {
		t.Fatalf("b_echo = %q %v", text, isErr)
	}
	if m := c.call("tools/call", `{"name":"a_env","arguments":{}}`); m.Error == nil {
		t.Fatal("an excluded tool was callable")
	}
	if m := c.call("prompts/list", `{}`); !strings.Contains(string(m.Result), `"a_greet"`) || !strings.Contains(string(m.Result), `"b_greet"`) {
		t.Fatalf("prompts/list = %s", m.Result)
	}
	if m := c.call("prompts/get", `{"name":"b_greet"}`); !strings.Contains(string(m.Result), "hello from b") {
		t.Fatalf("prompts/get b_greet = %s %v", m.Result, m.Error)
	}
}

func TestCollisionRefused(t *testing.T) {
	a := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	b := inprocUpstream(t, "b", newTestServer("b", nil), nil)
	ups := map[string]*Upstream{"a": a, "b": b}
	route := RouteConfig{Upstreams: []string{"a", "b"}, Prefixes: map[string]string{"a": "x_", "b": "x_"}}
	if _, err := NewGateway(route, ups, newTestGovernor(), headerAuth, quietLog()); err == nil || !strings.Contains(err.Error(), "x_echo") {
		t.Fatalf("err = %v, want a collision on x_echo", err)
	}
	if _, err := NewGateway(RouteConfig{Upstreams: []string{"a", "nope"}}, ups, newTestGovernor(), headerAuth, quietLog()); err == nil {
		t.Fatal("an unknown upstream was accepted")
	}
}

func TestToolListChangedRefreshes(t *testing.T) {
	s := newTestServer("a", nil)
	u := inprocUpstream(t, "a", s, nil)
	_, c := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	c.initialize()
	if names := toolNames(t, c); len(names) != 6 {
		t.Fatalf("tools = %v", names)
	}
	sdk.AddTool(s, &sdk.Tool{Name: "late", Description: "added later"}, func(context.Context, *sdk.CallToolRequest, echoInput) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "late"}}}, nil, nil
	})
	eventually(t, "the new tool to be listed", func() bool { return len(toolNames(t, c)) == 7 })
	if text, _ := c.callTool("late", `{}`); text != "late" {
		t.Fatalf("late = %q", text)
	}
}

func TestOutputRedactedAndCapped(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	gov := newTestGovernor()
	gov.set("secret", AuthzResult{Decision: policy.Allow, OutputMaxLines: 2,
		Redact: func(s string) string { return strings.ReplaceAll(s, "SECRET123", "[REDACTED]") }})
	_, c := newGateway(t, RouteConfig{}, gov, u)
	c.initialize()
	text, _ := c.callTool("secret", `{}`)
	if strings.Contains(text, "SECRET123") || !strings.Contains(text, "[REDACTED]") {
		t.Fatalf("not redacted: %q", text)
	}
	if strings.Contains(text, "line3") || !strings.Contains(text, "truncated") {
		t.Fatalf("not capped to 2 lines: %q", text)
	}
}

func TestGovernorFailureFailsClosed(t *testing.T) {
	u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	gov := newTestGovernor()
	gov.failWith = errors.New("audit sink down")
	_, c := newGateway(t, RouteConfig{}, gov, u)
	c.initialize()
	text, isErr := c.callTool("echo", `{"text":"x"}`)
	if !isErr || !strings.Contains(text, "DENY") {
		t.Fatalf("result = %q %v", text, isErr)
	}
}

func TestCallParamsForGovernor(t *testing.T) {
	u := inprocUpstream(t, "Retail", newTestServer("a", nil), nil)
	gov := newTestGovernor()
	_, c := newGateway(t, RouteConfig{}, gov, u)
	c.initialize()
	if _, isErr := c.callTool("echo", `{ "text" : "x" }`); isErr {
		t.Fatal("echo failed")
	}
	req := gov.lastRequest()
	want := `{"tool_arguments":{"text":"x"},"tool_arguments_hash":"` + action.SHA256Hex([]byte(`{"text":"x"}`)) +
		`","upstream_server":"Retail","upstream_tool":"echo"}`
	if string(req.Params) != want || req.Resource != "mcp://retail/echo" {
		t.Fatalf("params = %s resource = %s", req.Params, req.Resource)
	}
	if req.Metadata["upstream_server"] != "Retail" || req.Metadata["upstream_tool"] != "echo" {
		t.Fatalf("metadata = %v", req.Metadata)
	}
}

func TestMissingSchemaRefused(t *testing.T) {
	d := &toolDef{name: "raw"}
	if err := validateArguments(d, json.RawMessage(`{}`), false); err == nil {
		t.Fatal("a tool without inputSchema was accepted")
	}
	if err := validateArguments(d, json.RawMessage(`{}`), true); err != nil {
		t.Fatalf("allow_missing_tool_schemas: %v", err)
	}
	remote := &toolDef{name: "r", schema: json.RawMessage(`{"$ref":"https://example.com/s.json"}`)}
	if err := validateArguments(remote, json.RawMessage(`{}`), false); err == nil {
		t.Fatal("a remote $ref was loaded")
	}
	_ = slog.Default
}

// flakyHandler answers 503 while down is set.
type flakyHandler struct {
	down atomic.Bool
	next http.Handler
}

func (f *flakyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	f.next.ServeHTTP(w, r)
}

// TestOneUpstreamDownDoesNotTakeTheRouteDown: with several upstreams, a
// remote upstream that is down when the client initializes is left out,
// and dialed again once it is back.
func TestOneUpstreamDownDoesNotTakeTheRouteDown(t *testing.T) {
	a := inprocUpstream(t, "a", newTestServer("a", nil), nil)
	sb := newTestServer("b", nil)
	flaky := &flakyHandler{next: sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return sb }, nil)}
	srv := httptest.NewServer(flaky)
	t.Cleanup(func() { closeServer(srv) })
	b, err := NewUpstream(UpstreamConfig{Name: "b", URL: srv.URL}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	_, c := newGateway(t, RouteConfig{Include: []string{"*_echo"}}, newTestGovernor(), a, b)

	flaky.down.Store(true)
	c.initialize()
	if got := strings.Join(toolNames(t, c), ","); got != "a_echo" {
		t.Fatalf("tools with b down = %s", got)
	}
	if text, isErr := c.callTool("b_echo", `{"text":"x"}`); !isErr || !strings.HasPrefix(text, audit.ResultUpstreamUnavailable) {
		t.Fatalf("b_echo while down = %q", text)
	}
	flaky.down.Store(false)
	if text, isErr := c.callTool("b_echo", `{"text":"x"}`); isErr || text != "b:x" {
		t.Fatalf("b_echo once back = %q", text)
	}
}
