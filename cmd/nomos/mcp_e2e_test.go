package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const mcpCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	nomos {
		policy default {
			bundle retail.yaml
		}
		identity {
			api_key {env.T_ALICE_KEY} alice
		}
		audit {
			sink sqlite
		}
		approvals {
			approvers reviewer
		}
		upstream retail {
			command ./bin/retail-mcp
		}
	}
}

http://127.0.0.1:{PORT} {
	nomos_mcp retail
}
`

// mcpClient speaks raw Streamable HTTP JSON-RPC, as any client would.
type mcpClient struct {
	t       *testing.T
	url     string
	key     string
	session string
}

func (c *mcpClient) send(body string) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+c.key)
	if c.session != "" {
		req.Header.Set("Mcp-Session-Id", c.session)
		req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
		c.session = sid
	}
	data, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		data = lastSSEData(data)
	}
	var out map[string]any
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &out); err != nil {
			c.t.Fatalf("non-JSON answer %d: %s", resp.StatusCode, data)
		}
	}
	return resp.StatusCode, out
}

func (c *mcpClient) initialize() {
	c.t.Helper()
	code, out := c.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`)
	if code != 200 || out["result"] == nil || c.session == "" {
		c.t.Fatalf("initialize: %d %v", code, out)
	}
	c.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
}

func (c *mcpClient) call(tool, args string) (int, map[string]any) {
	c.t.Helper()
	return c.send(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `}}`)
}

func toolText(out map[string]any) (string, bool) {
	res, _ := out["result"].(map[string]any)
	content, _ := res["content"].([]any)
	var b strings.Builder
	for _, c := range content {
		if m, ok := c.(map[string]any); ok {
			b.WriteString(m["text"].(string))
		}
	}
	isErr, _ := res["isError"].(bool)
	return b.String(), isErr
}

func startMCPGateway(t *testing.T) *server {
	t.Helper()
	retail, err := os.ReadFile("../../examples/policies/retail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, mcpCaddyfile, map[string]string{"retail.yaml": string(retail), "bin/retail-mcp": string(buildRetailMCP(t))},
		"T_ALICE_KEY=alice-key")
}

// TestMCPGatewayGovernsAndAudits: a governed tools/call is allowed,
// denied or sent for approval by the retail policy, the upstream sees only
// what is allowed, and each decision is in the audit log with the MCP
// transport metadata.
func TestMCPGatewayGovernsAndAudits(t *testing.T) {
	s := startMCPGateway(t)
	c := &mcpClient{t: t, url: s.base + "/mcp", key: "alice-key"}
	// One code prefix, the shape the HTTP API answers (issue 8 #14).
	if code, out := (&mcpClient{t: t, url: c.url, key: "wrong"}).send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`); code != 401 ||
		out["decision"] != "DENY" || out["reason"] != "auth_error: principal authentication failed: unknown api key" {
		t.Fatalf("bad key: %d %v", code, out)
	}
	c.initialize()
	_, list := c.send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	raw, _ := json.Marshal(list)
	if !strings.Contains(string(raw), `"lookup_order"`) || strings.Contains(string(raw), `"issue_compensation"`) {
		t.Fatalf("tools/list must hide the always-denied tool: %s", raw)
	}
	if text, isErr := toolText(must(c.call("refund_order", `{"order_id":"1001","amount":20}`))); isErr || !strings.Contains(text, "refunded 20.00") {
		t.Fatalf("small refund: %q", text)
	}
	text, isErr := toolText(must(c.call("refund_order", `{"order_id":"1002","amount":250}`)))
	if !isErr || !strings.Contains(text, "REQUIRE_APPROVAL") || !strings.Contains(text, "apr_") {
		t.Fatalf("large refund: %q", text)
	}
	// A tool hidden by policy answers exactly as a tool that does not
	// exist, with valid or schema-violating arguments (issue 8 #15).
	for _, args := range []string{`{"order_id":"1002","value":5}`, `{"order_id":7,"value":"lots","extra":true}`} {
		_, hidden := c.call("issue_compensation", args)
		_, unknown := c.call("no_such_tool", args)
		h, _ := json.Marshal(hidden["error"])
		u, _ := json.Marshal(unknown["error"])
		if hidden["result"] != nil || string(h) != strings.ReplaceAll(string(u), "no_such_tool", "issue_compensation") ||
			!strings.Contains(string(h), "unknown tool: issue_compensation") {
			t.Fatalf("hidden tool %s answers %s, an unknown tool %s", args, h, u)
		}
	}
	if text, _ := toolText(must(c.call("lookup_order", `{"order_id":"1002"}`))); !strings.Contains(text, "refunded 0.00") {
		t.Fatalf("the held refund reached the upstream: %q", text)
	}
	db := openDB(t, s.auditDB())
	defer db.Close()
	var n int
	err := db.QueryRow(`SELECT count(*) FROM audit_events WHERE event_type = 'action.decision'
		AND json_extract(json, '$.action_type') = 'mcp.call'
		AND json_extract(json, '$.executor_metadata.downstream_transport') = 'streamable_http'
		AND json_extract(json, '$.executor_metadata.upstream_server') = 'retail'
		AND json_extract(json, '$.executor_metadata.downstream_session_id') = ?`, c.session).Scan(&n)
	if err != nil || n != 7 { // 3 decided calls, 2 hidden and 2 unknown refused
		t.Fatalf("audited MCP decisions with transport metadata: %d (%v)", n, err)
	}
	// Arguments that fail the tool's schema are refused before policy, and
	// the refusal is audited too.
	text, isErr = toolText(must(c.call("refund_order", `{"order_id":"1001","amount":"lots"}`)))
	if !isErr || !strings.Contains(text, "VALIDATION_ERROR") {
		t.Fatalf("invalid arguments: %q", text)
	}
	err = db.QueryRow(`SELECT count(*) FROM audit_events WHERE event_type = 'action.decision'
		AND json_extract(json, '$.result_classification') = 'VALIDATION_ERROR'
		AND json_extract(json, '$.resource_normalized') = 'mcp://retail/refund_order'`).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("audited schema refusals: %d (%v)", n, err)
	}
}

// TestMCPSessionSurvivesReload: a reload that changes the policy but not
// the upstream keeps the client's session and the upstream child.
func TestMCPSessionSurvivesReload(t *testing.T) {
	s := startMCPGateway(t)
	c := &mcpClient{t: t, url: s.base + "/mcp", key: "alice-key"}
	c.initialize()
	if text, isErr := toolText(must(c.call("refund_order", `{"order_id":"1001","amount":30}`))); isErr {
		t.Fatalf("before reload: %q", text)
	}
	stricter := strings.Replace(mustRead(t, filepath.Join(s.dir, "retail.yaml")), "lte: 100}", "lte: 10}", 1)
	writeFiles(t, s.dir, map[string]string{"retail.yaml": stricter})
	if _, errOut, code := runCLI(t, s.dir, "reload", "--force", "--config", "Caddyfile", "--adapter", "caddyfile", "--address", s.admin); code != 0 {
		t.Fatalf("reload: %s", errOut)
	}
	code, out := c.call("refund_order", `{"order_id":"1001","amount":30}`)
	if code != 200 {
		t.Fatalf("session lost across reload: %d %v", code, out)
	}
	if text, isErr := toolText(out); !isErr || !strings.Contains(text, "deny_by_default") {
		t.Fatalf("new policy (refunds up to 10) not applied after reload: %q", text)
	}
	// The upstream child kept its state: the first refund is still there.
	if text, _ := toolText(must(c.call("lookup_order", `{"order_id":"1001"}`))); !strings.Contains(text, "refunded 30.00") {
		t.Fatalf("upstream restarted across reload: %q", text)
	}
}

func must(code int, out map[string]any) map[string]any {
	if code != 200 {
		panic("unexpected status")
	}
	return out
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// lastSSEData is the payload of the last event of an SSE answer: the
// JSON-RPC response, after any notifications the upstream sent first.
func lastSSEData(stream []byte) []byte {
	var last []byte
	for _, line := range bytes.Split(stream, []byte("\n")) {
		if d, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			last = d
		}
	}
	return last
}

// TestMCPSessionsBoundedPerPrincipal: one principal cannot open sessions
// without bound; ending one frees its slot (issue 8 #7).
func TestMCPSessionsBoundedPerPrincipal(t *testing.T) {
	retail, err := os.ReadFile("../../examples/policies/retail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cf := strings.Replace(mcpCaddyfile, "nomos_mcp retail\n", "nomos_mcp retail {\n\t\tmax_sessions_per_principal 2\n\t}\n", 1)
	s := startServer(t, cf, map[string]string{"retail.yaml": string(retail), "bin/retail-mcp": string(buildRetailMCP(t))},
		"T_ALICE_KEY=alice-key")
	first := &mcpClient{t: t, url: s.base + "/mcp", key: "alice-key"}
	first.initialize()
	(&mcpClient{t: t, url: first.url, key: "alice-key"}).initialize()
	code, out := (&mcpClient{t: t, url: first.url, key: "alice-key"}).send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`)
	if code != http.StatusTooManyRequests || !strings.HasPrefix(fmt.Sprint(out["reason"]), "session_limit: ") {
		t.Fatalf("third session: %d %v, want 429 session_limit", code, out)
	}
	req, _ := http.NewRequest(http.MethodDelete, first.url, nil)
	req.Header.Set("Authorization", "Bearer alice-key")
	req.Header.Set("Mcp-Session-Id", first.session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %v %v", err, resp)
	}
	resp.Body.Close()
	(&mcpClient{t: t, url: first.url, key: "alice-key"}).initialize()
}
