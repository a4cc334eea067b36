package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestCapabilitiesOfMirrorsOnlyDeclared: only sampling, elicitation, roots
// and experimental are mirrored, canonically, so equal declarations share
// a key; anything malformed declares nothing.
func TestCapabilitiesOfMirrorsOnlyDeclared(t *testing.T) {
	cases := []struct{ params, key string }{
		{`{"capabilities":{}}`, `{}`},
		{`{}`, `{}`},
		{`not json`, `{}`},
		{`{"capabilities":{"sampling":{},"tasks":{"list":{}},"extensions":{"x/y":{}}}}`, `{"sampling":{}}`},
		{`{"capabilities":{"roots":{"listChanged":true},"elicitation":{"url":{},"form":{}}}}`, `{"elicitation":{"form":{},"url":{}},"roots":{"listChanged":true}}`},
		{`{"capabilities":{"elicitation":{ "form" : {} },"sampling":{}}}`, `{"elicitation":{"form":{}},"sampling":{}}`},
		{`{"capabilities":{"sampling":true,"roots":null,"experimental":{"a":1}}}`, `{"experimental":{"a":1}}`},
	}
	for _, c := range cases {
		if got := capabilitiesOf(json.RawMessage(c.params)).key; got != c.key {
			t.Errorf("capabilitiesOf(%s) = %s, want %s", c.params, got, c.key)
		}
	}
}

// TestDeclaresGuardsServerRequests: an upstream→client request the client
// did not declare is refused, including the URL mode of elicitation when
// only the form mode was declared.
func TestDeclaresGuardsServerRequests(t *testing.T) {
	cases := []struct {
		caps, method, params string
		want                 bool
	}{
		{`{}`, "sampling/createMessage", `{}`, false},
		{`{"sampling":{}}`, "sampling/createMessage", `{}`, true},
		{`{}`, "roots/list", ``, false},
		{`{"roots":{}}`, "roots/list", ``, true},
		{`{"elicitation":{}}`, "elicitation/create", `{"message":"m"}`, true},
		{`{"elicitation":{}}`, "elicitation/create", `{"mode":"url","url":"https://x"}`, false},
		{`{"elicitation":{"form":{}}}`, "elicitation/create", `{"mode":"form"}`, true},
		{`{"elicitation":{"form":{}}}`, "elicitation/create", `{"mode":"url"}`, false},
		{`{"elicitation":{"url":{}}}`, "elicitation/create", `{"mode":"url"}`, true},
		{`{"elicitation":{"url":{}}}`, "elicitation/create", `{}`, false},
		{`{"elicitation":{"form":{},"url":{}}}`, "elicitation/create", `{"mode":"other"}`, false},
		{`{}`, "elicitation/create", `{}`, false},
		{`{}`, "ping", ``, true},
	}
	for _, c := range cases {
		cc := capabilitiesOf(json.RawMessage(`{"capabilities":` + c.caps + `}`))
		if got := cc.declares(c.method, json.RawMessage(c.params)); got != c.want {
			t.Errorf("caps %s: declares(%s, %s) = %v, want %v", c.caps, c.method, c.params, got, c.want)
		}
	}
}

func initWithCaps(caps string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":%s,"clientInfo":{"name":"raw","version":"1"}}}`, caps)
}

// TestUpstreamSeesTheClientsCapabilities: over both upstream transports,
// the upstream session a client uses was initialized with exactly the
// mirrored capabilities that client declared, never the gateway's own; a
// stdio upstream runs one child per declared set.
func TestUpstreamSeesTheClientsCapabilities(t *testing.T) {
	for _, transport := range []string{TransportStdio, TransportStreamableHTTP} {
		t.Run(transport, func(t *testing.T) {
			var u *Upstream
			if transport == TransportStdio {
				u = stdioHelper(t, nil)
			} else {
				s := newTestServer("remote", nil)
				addCapsTool(s)
				srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
				t.Cleanup(srv.Close)
				u = startedUpstream(t, UpstreamConfig{Name: "remote", Transport: transport, URL: srv.URL})
			}
			_, plain := newGateway(t, RouteConfig{}, newTestGovernor(), u)
			plain.initialize()
			rich := &rawClient{t: t, url: plain.url, principal: "bob"}
			rich.initializeWith(initWithCaps(`{"sampling":{},"elicitation":{"form":{}},"tasks":{"list":{}}}`))

			got := map[string]map[string]json.RawMessage{}
			for name, c := range map[string]*rawClient{"plain": plain, "rich": rich} {
				text, isErr := c.callTool("caps", `{}`)
				if isErr {
					t.Fatalf("%s caps: %s", name, text)
				}
				var m map[string]json.RawMessage
				if err := json.Unmarshal([]byte(text), &m); err != nil {
					t.Fatalf("%s caps %q: %v", name, text, err)
				}
				got[name] = m
			}
			if got["plain"]["sampling"] != nil || got["plain"]["elicitation"] != nil {
				t.Errorf("a client that declared nothing reached an upstream told %s", got["plain"])
			}
			if got["rich"]["sampling"] == nil || string(got["rich"]["elicitation"]) != `{"form":{}}` {
				t.Errorf("the upstream saw %v, want sampling and form-only elicitation", got["rich"])
			}
			if got["rich"]["tasks"] != nil {
				t.Errorf("an unmirrored capability reached the upstream: %s", got["rich"]["tasks"])
			}
			if transport == TransportStdio && envOf(t, plain)["PID"] == envOf(t, rich)["PID"] {
				t.Error("clients with different capabilities share one stdio child")
			}
		})
	}
}

// addCapsTool adds "caps": the client capabilities the server was
// initialized with, as JSON.
func addCapsTool(s *sdk.Server) {
	sdk.AddTool(s, &sdk.Tool{Name: "caps", Description: "caps"}, func(_ context.Context, req *sdk.CallToolRequest, _ echoInput) (*sdk.CallToolResult, any, error) {
		b, _ := json.Marshal(req.Session.InitializeParams().Capabilities)
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(b)}}}, nil, nil
	})
}

// fakeBuiltins offers one tool, "local_echo", answered in process.
type fakeBuiltins struct{ calls []BuiltinCall }

func (f *fakeBuiltins) ToolDefinitions() []json.RawMessage {
	return []json.RawMessage{json.RawMessage(`{"name":"local_echo","inputSchema":{"type":"object"}}`)}
}

func (f *fakeBuiltins) Has(name string) bool { return name == "local_echo" || name == "echo" }

func (f *fakeBuiltins) CallTool(_ context.Context, call BuiltinCall) (any, bool) {
	if !f.Has(call.Name) {
		return nil, false
	}
	f.calls = append(f.calls, call)
	return map[string]any{"content": []any{map[string]string{"type": "text", "text": "local"}}}, true
}

// TestGatewayBuiltinsWithoutUpstreams: a route with built-in tools and no
// upstream initializes with the tools capability, lists and calls the
// built-in tools with the session's identity, answers the other lists
// empty and an unknown tool as usual.
func TestGatewayBuiltinsWithoutUpstreams(t *testing.T) {
	b := &fakeBuiltins{}
	g, err := NewGateway(RouteConfig{}, nil, newTestGovernor(), headerAuth, quietLog(), WithBuiltins(b))
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, url: serveGateway(t, g).URL, principal: "alice"}
	resp := c.do(http.MethodPost, initBody, nil)
	var init message
	_ = json.NewDecoder(resp.Body).Decode(&init)
	if !strings.Contains(string(init.Result), `"tools":{}`) {
		t.Fatalf("initialize: %s", init.Result)
	}
	c.session = resp.Header.Get(HeaderSessionID)
	if m := c.call("tools/list", `{}`); !strings.Contains(string(m.Result), "local_echo") {
		t.Fatalf("tools/list: %s %v", m.Result, m.Error)
	}
	if text, isErr := c.callTool("local_echo", `{}`); isErr || text != "local" {
		t.Fatalf("local_echo: %q %v", text, isErr)
	}
	if len(b.calls) != 1 || b.calls[0].Identity.Principal != "alice" || b.calls[0].SessionID != c.session || b.calls[0].Transport != DownstreamStreamableHTTP {
		t.Fatalf("built-in call: %+v", b.calls)
	}
	if m := c.call("prompts/list", `{}`); m.Error != nil || !strings.Contains(string(m.Result), `"prompts":[]`) {
		t.Fatalf("prompts/list: %s %v", m.Result, m.Error)
	}
	if m := c.call("tools/call", `{"name":"nope","arguments":{}}`); m.Error == nil || m.Error.Code != -32602 {
		t.Fatalf("unknown tool: %s %v", m.Result, m.Error)
	}
}

// TestGatewayBuiltinsShadowUpstreamTools: an upstream tool named like a
// built-in tool is not listed, and its name reaches the built-in.
func TestGatewayBuiltinsShadowUpstreamTools(t *testing.T) {
	u := stdioHelper(t, nil)
	b := &fakeBuiltins{}
	g, err := NewGateway(RouteConfig{Upstreams: []string{u.Name()}}, map[string]*Upstream{u.Name(): u}, newTestGovernor(), headerAuth, quietLog(), WithBuiltins(b))
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, url: serveGateway(t, g).URL, principal: "alice"}
	c.initialize()
	m := c.call("tools/list", `{}`)
	if strings.Contains(string(m.Result), `"name":"echo"`) || !strings.Contains(string(m.Result), `"name":"hang"`) {
		t.Fatalf("tools/list: %s", m.Result)
	}
	if text, _ := c.callTool("echo", `{"text":"x"}`); text != "local" {
		t.Fatalf("echo reached the upstream: %q", text)
	}
}

// TestStdioChildrenBounded: one stdio upstream runs at most
// maxStdioChildren children. While every child is in use, a further
// capability set is never refused: its session is served by the child of
// the largest set within it (sessions declaring made-up sets cannot lock
// others out); once a session ends, a new set replaces its unused child.
func TestStdioChildrenBounded(t *testing.T) {
	u := stdioHelper(t, nil)
	_, first := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	clients := make([]*rawClient, 0, maxStdioChildren-1)
	for i := range maxStdioChildren - 2 { // the control child is the first
		c := &rawClient{t: t, url: first.url, principal: "mallory"}
		c.initializeWith(initWithCaps(fmt.Sprintf(`{"experimental":{"set":%d}}`, i)))
		clients = append(clients, c)
	}
	roots := &rawClient{t: t, url: first.url, principal: "alice"}
	roots.initializeWith(initWithCaps(`{"roots":{}}`))
	clients = append(clients, roots)

	late := &rawClient{t: t, url: first.url, principal: "alice"}
	late.initializeWith(initWithCaps(`{"roots":{},"sampling":{}}`))
	if text, isErr := late.callTool("caps", `{}`); isErr || !strings.Contains(text, "roots") || strings.Contains(text, "sampling") {
		t.Fatalf("a set past the bound is not served by the largest set within it: %q %v", text, isErr)
	}
	extra := &rawClient{t: t, url: first.url, principal: "alice"}
	extra.initializeWith(initWithCaps(`{"experimental":{"set":"one too many"}}`))
	if text, isErr := extra.callTool("caps", `{}`); isErr || strings.Contains(text, "one too many") {
		t.Fatalf("a set past the bound got a child of its own: %q %v", text, isErr)
	}
	if r := extra.do(http.MethodDelete, "", nil); r.StatusCode >= 300 {
		t.Fatalf("DELETE: %d", r.StatusCode)
	}
	if r := clients[0].do(http.MethodDelete, "", nil); r.StatusCode >= 300 {
		t.Fatalf("DELETE: %d", r.StatusCode)
	}
	extra = &rawClient{t: t, url: first.url, principal: "alice"}
	extra.initializeWith(initWithCaps(`{"experimental":{"set":"one too many"}}`))
	if text, isErr := extra.callTool("caps", `{}`); isErr || !strings.Contains(text, "one too many") {
		t.Fatalf("the new set's child: %q %v", text, isErr)
	}
	u.mu.Lock()
	n := len(u.children)
	u.mu.Unlock()
	if n != maxStdioChildren {
		t.Fatalf("%d children, want %d", n, maxStdioChildren)
	}
}
