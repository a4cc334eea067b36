package caddymodule

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// cannedUpstream is a stateless Streamable HTTP MCP server with one tool,
// answering from fixed bytes, so the handler benchmark counts the
// gateway's work rather than an SDK server's.
func cannedUpstream() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, _ := io.ReadAll(r.Body)
		id := jsonID(body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case bytes.Contains(body, []byte(`"initialize"`)):
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"canned","version":"1"}}}`, id)
		case bytes.Contains(body, []byte(`"tools/list"`)):
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}}}]}}`, id)
		case bytes.Contains(body, []byte(`"tools/call"`)):
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"hi"}]}}`, id)
		case bytes.Contains(body, []byte(`"id"`)):
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{}}`, id)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}
}

// jsonID is the raw id of a JSON-RPC request, good enough for the canned
// upstream's own client.
func jsonID(body []byte) string {
	i := bytes.Index(body, []byte(`"id":`))
	if i < 0 {
		return "null"
	}
	rest := body[i+5:]
	end := bytes.IndexAny(rest, ",}")
	if end < 0 {
		return "null"
	}
	return string(bytes.TrimSpace(rest[:end]))
}

const allowAllBundle = "version: v1\nrules:\n  - id: allow-all\n    action_type: \"*\"\n    resource: \"**\"\n    decision: ALLOW\n"

// newBenchMCP provisions an app (allow-all policy, the given audit sink) in
// front of the canned upstream and returns its nomos_mcp handler.
func newBenchMCP(b *testing.B, sink SinkConfig) *MCPHandler {
	up := httptest.NewServer(cannedUpstream())
	b.Cleanup(up.Close)
	dir := b.TempDir()
	bundle := filepath.Join(dir, "allow.yaml")
	if err := os.WriteFile(bundle, []byte(allowAllBundle), 0o600); err != nil {
		b.Fatal(err)
	}
	if sink.Type == "sqlite" {
		sink.Path = filepath.Join(dir, "audit.db")
	}
	app := newTestApp(b, func(a *App) {
		a.Policies["default"].Bundles[0].Path = bundle
		a.Audit = &AuditConfig{Sinks: []SinkConfig{sink}}
		a.Upstreams = map[string]*UpstreamConfig{"canned": {URL: up.URL + "/mcp"}}
	})
	h := &MCPHandler{Upstreams: []string{"canned"}}
	if err := h.bind(app); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = h.Cleanup() })
	return h
}

func mcpPost(h *MCPHandler, body, session string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer alice-key")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	}
	w := httptest.NewRecorder()
	_ = h.ServeHTTP(w, req, nil)
	return w
}

func openBenchSession(b *testing.B, h *MCPHandler) string {
	w := mcpPost(h, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`, "")
	sid := w.Header().Get("Mcp-Session-Id")
	if w.Code != http.StatusOK || sid == "" {
		b.Fatalf("initialize: %d %s", w.Code, w.Body)
	}
	mcpPost(h, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, sid)
	return sid
}

// BenchmarkGovernedToolCall is the allocation budget for one
// governed tools/call: from nomos_mcp's ServeHTTP to the response written,
// through the real governor, service (policy, audit before execute) and
// audit Recorder (sealing, redaction, a real sink), relayed to an
// in-process upstream over loopback. allocs/op counts the whole process
// during the call, so it includes the upstream's own HTTP server (see
// upstream_alone) and the Recorder's commit goroutine. It asserts nothing.
func BenchmarkGovernedToolCall(b *testing.B) {
	const call = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`
	b.Run("upstream_alone", func(b *testing.B) {
		up := httptest.NewServer(cannedUpstream())
		defer up.Close()
		b.ReportAllocs()
		for b.Loop() {
			resp, err := http.Post(up.URL+"/mcp", "application/json", strings.NewReader(call))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	for _, c := range []struct {
		name string
		sink SinkConfig
	}{
		{"audit=sqlite_full", SinkConfig{Type: "sqlite"}},
		{"audit=sqlite_normal", SinkConfig{Type: "sqlite", Synchronous: "normal"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := newBenchMCP(b, c.sink)
			sid := openBenchSession(b, h)
			if w := mcpPost(h, call, sid); !strings.Contains(w.Body.String(), `"text":"hi"`) {
				b.Fatalf("tools/call: %d %s", w.Code, w.Body)
			}
			runtime.GC()
			b.ReportAllocs()
			for b.Loop() {
				if w := mcpPost(h, call, sid); w.Code != http.StatusOK {
					b.Fatalf("tools/call: %d %s", w.Code, w.Body)
				}
			}
		})
	}
}
