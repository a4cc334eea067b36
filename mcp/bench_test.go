package mcp

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
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

// BenchmarkIdleSessionMemory is the memory budget for an idle MCP
// session: the heap growth per initialized session, over 10,000 sessions
// of 100 principals (100 each, under the default cap of 256 per principal,
// so the cap never binds). With upstream=stdio the upstream is a child
// process, so the heap is the gateway's alone; with upstream=http it is an
// in-process Go SDK server, whose side of each session's upstream
// connection is counted too (an upper bound). It reports bytes/session and
// asserts nothing.
func BenchmarkIdleSessionMemory(b *testing.B) {
	b.Run("upstream=stdio", func(b *testing.B) {
		exe, err := os.Executable()
		if err != nil {
			b.Fatal(err)
		}
		benchIdleSessions(b, UpstreamConfig{Name: "a", Command: exe, Env: map[string]string{helperEnv: "1"}})
	})
	b.Run("upstream=http", func(b *testing.B) {
		s := newTestServer("a", nil)
		upSrv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
		defer upSrv.Close()
		benchIdleSessions(b, UpstreamConfig{Name: "a", URL: upSrv.URL})
	})
}

func benchIdleSessions(b *testing.B, cfg UpstreamConfig) {
	const sessions, principals = 10000, 100
	u, err := NewUpstream(cfg, quietLog())
	if err != nil {
		b.Fatal(err)
	}
	if err := u.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	route := RouteConfig{Upstreams: []string{"a"}, InitializePerMinute: sessions}
	for b.Loop() {
		g, err := NewGateway(route, map[string]*Upstream{"a": u}, newTestGovernor(), headerAuth, quietLog())
		if err != nil {
			b.Fatal(err)
		}
		before := heapInUse()
		for i := range sessions {
			openIdleSession(b, g, fmt.Sprintf("principal-%03d", i%principals))
		}
		after := heapInUse()
		b.ReportMetric(float64(after-before)/sessions, "bytes/session")
		g.Close()
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// openIdleSession initializes one session as a client would (initialize,
// then notifications/initialized) and leaves it idle.
func openIdleSession(b *testing.B, g *Gateway, principal string) {
	post := func(body, sid string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("X-Test-Principal", principal)
		if sid != "" {
			req.Header.Set(HeaderSessionID, sid)
			req.Header.Set("MCP-Protocol-Version", "2025-06-18")
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		return w
	}
	w := post(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`, "")
	sid := w.Header().Get(HeaderSessionID)
	if w.Code != http.StatusOK || sid == "" {
		b.Fatalf("initialize as %s: %d %s", principal, w.Code, w.Body)
	}
	if w := post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, sid); w.Code/100 != 2 {
		b.Fatalf("initialized: %d %s", w.Code, w.Body)
	}
}
