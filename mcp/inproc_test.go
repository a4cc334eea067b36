package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// echoInput is the argument of the in-process test tools.
type echoInput struct {
	Text string `json:"text,omitempty"`
}

// hangHooks observe and steer the hang tool.
type hangHooks struct {
	release  chan struct{} // closing it makes hang return
	started  chan struct{} // receives once per hang call
	canceled chan struct{} // receives when a hang call sees cancellation
}

func newHangHooks() *hangHooks {
	return &hangHooks{release: make(chan struct{}), started: make(chan struct{}, 16), canceled: make(chan struct{}, 16)}
}

// newTestServer is an in-process Go SDK MCP server with a few tools:
// echo, hang (blocks until canceled or released), secret (returns text to
// redact), fail (a tool error) and env (the process environment).
func newTestServer(name string, hooks *hangHooks) *sdk.Server {
	if hooks == nil {
		hooks = newHangHooks()
	}
	s := sdk.NewServer(&sdk.Implementation{Name: name, Version: "1"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "echo", Description: "echo"}, func(_ context.Context, _ *sdk.CallToolRequest, in echoInput) (*sdk.CallToolResult, any, error) {
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: name + ":" + in.Text}}}, nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "hang", Description: "hang"}, func(ctx context.Context, _ *sdk.CallToolRequest, _ echoInput) (*sdk.CallToolResult, any, error) {
		hooks.started <- struct{}{}
		select {
		case <-ctx.Done():
			hooks.canceled <- struct{}{}
			return nil, nil, ctx.Err()
		case <-hooks.release:
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "released"}}}, nil, nil
		}
	})
	sdk.AddTool(s, &sdk.Tool{Name: "secret", Description: "secret"}, func(context.Context, *sdk.CallToolRequest, echoInput) (*sdk.CallToolResult, any, error) {
		text := "token=SECRET123\nline2\nline3\nline4"
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: text}}}, nil, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "fail", Description: "fail"}, func(context.Context, *sdk.CallToolRequest, echoInput) (*sdk.CallToolResult, any, error) {
		return nil, nil, errors.New("tool failed on purpose")
	})
	sdk.AddTool(s, &sdk.Tool{Name: "sample", Description: "asks the client to sample"}, func(ctx context.Context, req *sdk.CallToolRequest, _ echoInput) (*sdk.CallToolResult, any, error) {
		res, err := req.Session.CreateMessage(ctx, &sdk.CreateMessageParams{MaxTokens: 10,
			Messages: []*sdk.SamplingMessage{{Role: "user", Content: &sdk.TextContent{Text: "hi"}}}})
		if err != nil {
			return nil, nil, err
		}
		text, _ := res.Content.(*sdk.TextContent)
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "sampled:" + text.Text}}}, nil, nil
	})
	s.AddPrompt(&sdk.Prompt{Name: "greet"}, func(context.Context, *sdk.GetPromptRequest) (*sdk.GetPromptResult, error) {
		return &sdk.GetPromptResult{Messages: []*sdk.PromptMessage{{Role: "user", Content: &sdk.TextContent{Text: "hello from " + name}}}}, nil
	})
	sdk.AddTool(s, &sdk.Tool{Name: "env", Description: "env"}, func(context.Context, *sdk.CallToolRequest, echoInput) (*sdk.CallToolResult, any, error) {
		wd, _ := os.Getwd()
		text := strings.Join(os.Environ(), "\n") + "\nWD=" + wd + fmt.Sprintf("\nPID=%d", os.Getpid())
		return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: text}}}, nil, nil
	})
	return s
}

// inprocUpstream serves a test server over Streamable HTTP on loopback and
// returns a started Upstream for it.
func inprocUpstream(t *testing.T, name string, s *sdk.Server, mutate func(*UpstreamConfig)) *Upstream {
	t.Helper()
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil)
	srv := httptest.NewServer(h)
	t.Cleanup(func() { closeServer(srv) })
	cfg := UpstreamConfig{Name: name, URL: srv.URL}
	if mutate != nil {
		mutate(&cfg)
	}
	return startedUpstream(t, cfg)
}

// rawClient speaks raw Streamable HTTP to a gateway.
type rawClient struct {
	t         *testing.T
	url       string
	principal string
	session   string
}

func (c *rawClient) do(method string, body string, hdr map[string]string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.principal != "" {
		req.Header.Set("X-Test-Principal", c.principal)
	}
	if c.session != "" {
		req.Header.Set(HeaderSessionID, c.session)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	answer, err := io.ReadAll(resp.Body) // no SSE streams: every answer ends
	resp.Body.Close()
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	return resp
}

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// initialize opens a session and sends notifications/initialized.
func (c *rawClient) initialize() { c.t.Helper(); c.initializeWith(initBody) }

// initializeWith opens a session with the given initialize message.
func (c *rawClient) initializeWith(body string) {
	c.t.Helper()
	resp := c.do(http.MethodPost, body, nil)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("initialize: %d", resp.StatusCode)
	}
	c.session = resp.Header.Get(HeaderSessionID)
	if c.session == "" {
		c.t.Fatal("no session id")
	}
	if r := c.do(http.MethodPost, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil); r.StatusCode != http.StatusAccepted {
		c.t.Fatalf("initialized: %d", r.StatusCode)
	}
}

// call posts a request and returns the decoded JSON-RPC response.
func (c *rawClient) call(method, params string) message {
	c.t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":%q,"params":%s}`, method, params)
	req := c.do(http.MethodPost, body, map[string]string{"Accept": "application/json"})
	var m message
	if err := json.NewDecoder(req.Body).Decode(&m); err != nil {
		c.t.Fatalf("%s: status %d: %v", method, req.StatusCode, err)
	}
	return m
}

// callTool returns the tool result of tools/call.
func (c *rawClient) callTool(name string, args string) (text string, isError bool) {
	c.t.Helper()
	m := c.call("tools/call", fmt.Sprintf(`{"name":%q,"arguments":%s}`, name, args))
	if m.Error != nil {
		c.t.Fatalf("tools/call %s: %v", name, m.Error)
	}
	var r struct {
		Content []struct {
			Text string `json:"text,omitempty"`
		} `json:"content"`
		IsError bool `json:"isError"`
	}
	_ = json.Unmarshal(m.Result, &r)
	var parts []string
	for _, c := range r.Content {
		parts = append(parts, c.Text)
	}
	return strings.Join(parts, "\n"), r.IsError
}

func newGateway(t *testing.T, route RouteConfig, gov Governor, ups ...*Upstream) (*Gateway, *rawClient) {
	t.Helper()
	m := map[string]*Upstream{}
	for _, u := range ups {
		m[u.Name()] = u
		if len(route.Upstreams) < len(ups) {
			route.Upstreams = append(route.Upstreams, u.Name())
		}
	}
	g, err := NewGateway(route, m, gov, headerAuth, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	srv := serveGateway(t, g)
	return g, &rawClient{t: t, url: srv.URL, principal: "alice"}
}
