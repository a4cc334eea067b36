package mcp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkToolCall compares a tools/call through the gateway with the
// same call made directly to the upstream, in the same run, so the
// difference is the gateway's added cost (governance, validation, relay).
func BenchmarkToolCall(b *testing.B) {
	s := newTestServer("a", nil)
	upSrv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	defer upSrv.Close()
	u, err := NewUpstream(UpstreamConfig{Name: "a", URL: upSrv.URL}, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	if err := u.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	g, err := NewGateway(RouteConfig{Upstreams: []string{"a"}}, map[string]*Upstream{"a": u}, newTestGovernor(), headerAuth, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	gwSrv := httptest.NewServer(g)
	defer gwSrv.Close()
	defer g.Close()
	b.Run("direct", func(b *testing.B) { benchCall(b, upSrv.URL) })
	b.Run("gateway", func(b *testing.B) { benchCall(b, gwSrv.URL) })
}

func benchCall(b *testing.B, url string) {
	client := sdk.NewClient(&sdk.Implementation{Name: "bench", Version: "1"}, nil)
	hc := &http.Client{Transport: principalTransport{principal: "alice", next: http.DefaultTransport}}
	cs, err := client.Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: url, HTTPClient: hc, DisableStandaloneSSE: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cs.Close()
	params := &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if res, err := cs.CallTool(context.Background(), params); err != nil || res.IsError {
			b.Fatalf("call: %v", err)
		}
	}
}
