package mcp

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// TestLegacySSEUpstream relays tools/call to an mcp-go server that only
// speaks the legacy HTTP+SSE transport.
func TestLegacySSEUpstream(t *testing.T) {
	ms := server.NewMCPServer("legacy", "1")
	ms.AddTool(mcpgo.NewTool("shout", mcpgo.WithString("text", mcpgo.Required())),
		func(_ context.Context, req mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			return mcpgo.NewToolResultText("legacy:" + req.GetString("text", "")), nil
		})
	srv := httptest.NewUnstartedServer(nil)
	srv.Config.Handler = server.NewSSEServer(ms, server.WithBaseURL("http://"+srv.Listener.Addr().String()))
	srv.Start()
	t.Cleanup(func() { closeServer(srv) })

	u, err := NewUpstream(UpstreamConfig{Name: "legacy", Transport: TransportSSE, URL: srv.URL + "/sse"}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := u.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	_, c := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	c.initialize()
	if text, isErr := c.callTool("shout", `{"text":"hi"}`); isErr || text != "legacy:hi" {
		t.Fatalf("shout = %q %v", text, isErr)
	}
	if text, isErr := c.callTool("shout", `{}`); !isErr || text == "" {
		t.Fatalf("missing required argument: %q %v", text, isErr)
	}
}

// TestAllowedHostsGuardsRemoteUpstreams: a URL outside allowed_hosts is
// refused at load.
func TestAllowedHostsGuardsRemoteUpstreams(t *testing.T) {
	_, err := NewUpstream(UpstreamConfig{Name: "r", URL: "http://127.0.0.1:1/mcp", AllowedHosts: []string{"example.com"}}, quietLog())
	if err == nil {
		t.Fatal("a URL outside allowed_hosts was accepted")
	}
}
