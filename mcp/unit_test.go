package mcp

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

func TestDecodeMessage(t *testing.T) {
	cases := []struct {
		name, body string
		ok         bool
	}{
		{"request", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, true},
		{"string id", `{"jsonrpc":"2.0","id":"a","method":"ping","params":{}}`, true},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, true},
		{"response", `{"jsonrpc":"2.0","id":"s1","result":{}}`, true},
		{"error response", `{"jsonrpc":"2.0","id":"s1","error":{"code":-1,"message":"x"}}`, true},
		{"batch", ` [{"jsonrpc":"2.0","id":1,"method":"ping"}]`, false},
		{"wrong version", `{"jsonrpc":"1.0","id":1,"method":"ping"}`, false},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"ping"}`, false},
		{"bool id", `{"jsonrpc":"2.0","id":true,"method":"ping"}`, false},
		{"result and error", `{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":""}}`, false},
		{"request with result", `{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}`, false},
		{"neither", `{"jsonrpc":"2.0"}`, false},
		{"duplicate", `{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}`, false},
		{"case variant", `{"jsonrpc":"2.0","id":1,"method":"ping","Params":{}}`, false},
		{"deep duplicate", `{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":[{"b":1,"B":2}]}}`, false},
		{"escaped case variant in arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"refund","arguments":{"amount":50,"\u0041mount":5000}}}`, false},
		{"kelvin sign in arguments", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"k","arguments":{"kind":1,"\u212aind":2}}}`, false},
		{"trailing", `{"jsonrpc":"2.0","id":1,"method":"ping"} {}`, false},
		{"too deep", `{"jsonrpc":"2.0","id":1,"method":"x","params":` + strings.Repeat("[", action.MaxJSONDepth+1) + strings.Repeat("]", action.MaxJSONDepth+1) + `}`, false},
		{"not json", `hello`, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeMessage([]byte(tc.body))
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{}}}`))
	f.Add([]byte(`[{}]`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":"x","result":{"a":[1,2,{"b":null}]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		if m.JSONRPC != "2.0" || !(m.IsRequest() || m.IsNotification() || m.IsResponse()) {
			t.Fatalf("accepted an invalid message: %s", b)
		}
		if err := action.CheckStrictJSON(b); err != nil {
			t.Fatalf("accepted non-strict json: %v", err)
		}
	})
}

func TestShapeOutput(t *testing.T) {
	result := json.RawMessage(`{"content":[{"type":"text","text":"a\nb\nc"},{"type":"image","data":"AAAA","mimeType":"image/png"}],"isError":false}`)
	cases := []struct {
		name      string
		res       AuthzResult
		wantText  string
		wantBlock int
		truncated bool
	}{
		{"no caps", AuthzResult{}, "a\nb\nc", 2, false},
		{"two lines", AuthzResult{OutputMaxLines: 2}, "a\nb\n" + truncationNote, 1, true},
		{"three bytes", AuthzResult{OutputMaxBytes: 3}, "a\nb" + truncationNote, 1, true},
		{"room for all", AuthzResult{OutputMaxBytes: 1000, OutputMaxLines: 10}, "a\nb\nc", 2, false},
		{"redact", AuthzResult{Redact: func(s string) string { return strings.ReplaceAll(s, "b", "*") }}, "a\n*\nc", 2, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, isErr := shapeOutput(result, tc.res, "content")
			if isErr {
				t.Fatal("isError flipped")
			}
			m := v.(map[string]any)
			blocks := m["content"].([]any)
			text := blocks[0].(map[string]any)["text"].(string)
			if text != tc.wantText || len(blocks) != tc.wantBlock {
				t.Fatalf("text %q blocks %d", text, len(blocks))
			}
			meta, _ := m["_meta"].(map[string]any)
			if (meta["nomos/truncated"] == true) != tc.truncated {
				t.Fatalf("_meta = %v", meta)
			}
		})
	}
}

func TestChildEnv(t *testing.T) {
	parent := map[string]string{"HOME": "/home/x", "SECRET": "s", "PATH": "/bin"}
	lookup := func(k string) (string, bool) { v, ok := parent[k]; return v, ok }
	cfg := UpstreamConfig{EnvAllowlist: []string{"HOME", "MISSING"}, Env: map[string]string{"HOME": "/override", "A": "1"}}
	got := strings.Join(childEnv(cfg, lookup), " ")
	if got != "A=1 HOME=/override" {
		t.Fatalf("env = %q", got)
	}
	if env := childEnv(UpstreamConfig{}, lookup); env == nil || len(env) != 0 {
		t.Fatalf("an empty env must be empty and non-nil, got %#v", env)
	}
}

func TestUpstreamConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  UpstreamConfig
		ok   bool
	}{
		{"stdio", UpstreamConfig{Name: "a", Command: "/bin/true"}, true},
		{"remote", UpstreamConfig{Name: "a", URL: "https://mcp.example.com/mcp"}, true},
		{"no name", UpstreamConfig{Command: "/bin/true"}, false},
		{"bad name", UpstreamConfig{Name: "a/b", Command: "/bin/true"}, false},
		{"both", UpstreamConfig{Name: "a", Command: "/bin/true", URL: "https://x"}, false},
		{"glob allowlist", UpstreamConfig{Name: "a", Command: "/bin/true", EnvAllowlist: []string{"AWS_*"}}, false},
		{"missing workdir", UpstreamConfig{Name: "a", Command: "/bin/true", Workdir: "/does/not/exist"}, false},
		{"relative url", UpstreamConfig{Name: "a", URL: "/mcp"}, false},
		{"half mtls", UpstreamConfig{Name: "a", URL: "https://x/mcp", ClientCert: "c.pem"}, false},
		{"unknown transport", UpstreamConfig{Name: "a", Transport: "ws", URL: "https://x/mcp"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.withDefaults().validate()
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestDefaultsAndKey(t *testing.T) {
	cfg := UpstreamConfig{Name: "a", Command: "/bin/true"}.withDefaults()
	b := cfg.Breaker
	if b.Disabled || b.FailureThreshold != 5 || b.FailureWindow != time.Minute || b.OpenTimeout != 30*time.Second {
		t.Fatalf("breaker defaults = %+v", b)
	}
	other := UpstreamConfig{Name: "a", Command: "/bin/true", Env: map[string]string{"X": "1"}}.withDefaults()
	if cfg.key() == other.key() || cfg.key() != (UpstreamConfig{Name: "a", Command: "/bin/true"}).withDefaults().key() {
		t.Fatal("Key must change with the config and only with it")
	}
}

func TestDenialText(t *testing.T) {
	text := DenialText(AuthzResult{Decision: policy.RequireApproval, Reason: "needs_approval", ApprovalID: "apr_1",
		ApprovalExpiresAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	for _, want := range []string{"REQUIRE_APPROVAL", "apr_1", "approval_id", "2026-01-02T03:04:05Z"} {
		if !strings.Contains(text, want) {
			t.Fatalf("%q lacks %q", text, want)
		}
	}
	if text := DenialText(AuthzResult{Decision: policy.Deny}); !strings.Contains(text, "DENY") {
		t.Fatalf("deny text %q", text)
	}
}

// wrapped is a response writer like Caddy's: it flushes only through
// FlushError and exposes the writer it wraps.
type wrapped struct {
	http.ResponseWriter
	flushed int
}

func (w *wrapped) FlushError() error {
	w.flushed++
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *wrapped) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestFlusherOfWrappedWriters: SSE must stream through writers that offer
// FlushError instead of Flush, or server-to-client requests never arrive.
func TestFlusherOfWrappedWriters(t *testing.T) {
	rec := httptest.NewRecorder()
	w := &wrapped{ResponseWriter: rec}
	f, ok := flusherOf(w)
	if !ok {
		t.Fatal("no flusher found through FlushError")
	}
	f.Flush()
	if w.flushed != 1 || !rec.Flushed {
		t.Fatalf("flush did not go through the wrapper: %d %v", w.flushed, rec.Flushed)
	}
	type plain struct{ http.ResponseWriter }
	if _, ok := flusherOf(plain{nil}); ok {
		t.Fatal("a writer that cannot flush reported a flusher")
	}
}
