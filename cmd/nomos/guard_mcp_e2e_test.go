package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

const guardMCPPolicy = `version: v1
rules:
  - id: echo
    action_type: mcp.call
    resource: "mcp://remote/echo"
    decision: ALLOW
  - id: ask
    action_type: mcp.call
    resource: "mcp://remote/ask"
    decision: ALLOW
  - id: pay-small
    action_type: mcp.call
    resource: "mcp://remote/pay"
    decision: ALLOW
    params_match:
      tool_arguments.amount: {lte: 100}
  - id: pay-large
    action_type: mcp.call
    resource: "mcp://remote/pay"
    decision: REQUIRE_APPROVAL
    params_match:
      tool_arguments.amount: {gt: 100}
`

// guardMCPCaddyfile puts nomos_guard's MCP mode before reverse_proxy to a
// Go SDK MCP server that answers with SSE streams (/sse/) and to one that
// answers plain JSON, gzip-compressed when asked (/json/).
const guardMCPCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	nomos {
		policy default {
			bundle guard-mcp.yaml
		}
		identity {
			api_key {env.T_ALICE_KEY} alice
			api_key {env.T_BOB_KEY} bob
			api_key {env.T_REVIEWER_KEY} reviewer
		}
		audit {
			sink sqlite
		}
		approvals {
			approvers reviewer
		}
	}
}

http://127.0.0.1:{PORT} {
	handle /approvals/decide {
		nomos_api
	}
	handle /sse/* {
		nomos_guard {
			name remote-sse
			mcp remote
			require_agent false
		}
		reverse_proxy {env.T_SSE}
	}
	handle /json/* {
		nomos_guard {
			name remote-json
			mcp remote
			require_agent false
		}
		reverse_proxy {env.T_JSON}
	}
}
`

type guardPayInput struct {
	Amount float64 `json:"amount"`
}

type guardEchoArgs struct {
	Text string `json:"text"`
}

// newGuardedMCP is a Go SDK MCP server over stateful Streamable HTTP with
// the tools echo, pay and wipe; gzipped compresses answers for clients
// that accept gzip.
func newGuardedMCP(t *testing.T, jsonResponse, gzipped bool) string {
	t.Helper()
	s := mcpsdk.NewServer(&mcpsdk.Implementation{Name: "remote", Version: "1"}, nil)
	mcpsdk.AddTool(s, &mcpsdk.Tool{Name: "echo", Description: "echo"}, func(_ context.Context, _ *mcpsdk.CallToolRequest, in guardEchoArgs) (*mcpsdk.CallToolResult, any, error) {
		return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: "echo " + in.Text}}}, nil, nil
	})
	mcpsdk.AddTool(s, &mcpsdk.Tool{Name: "pay", Description: "pay"}, func(_ context.Context, _ *mcpsdk.CallToolRequest, in guardPayInput) (*mcpsdk.CallToolResult, any, error) {
		return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: fmt.Sprintf("paid %v", in.Amount)}}}, nil, nil
	})
	mcpsdk.AddTool(s, &mcpsdk.Tool{Name: "wipe", Description: "wipe"}, func(context.Context, *mcpsdk.CallToolRequest, guardEchoArgs) (*mcpsdk.CallToolResult, any, error) {
		t.Error("wipe reached the upstream")
		return &mcpsdk.CallToolResult{}, nil, nil
	})
	mcpsdk.AddTool(s, &mcpsdk.Tool{Name: "ask", Description: "asks the client's model"}, func(ctx context.Context, req *mcpsdk.CallToolRequest, _ guardEchoArgs) (*mcpsdk.CallToolResult, any, error) {
		text := "sampled"
		if _, err := req.Session.CreateMessage(ctx, &mcpsdk.CreateMessageParams{MaxTokens: 5}); err != nil {
			text = "sampling refused: " + err.Error()
		}
		return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: text}}}, nil, nil
	})
	var h http.Handler = mcpsdk.NewStreamableHTTPHandler(func(*http.Request) *mcpsdk.Server { return s }, &mcpsdk.StreamableHTTPOptions{JSONResponse: jsonResponse})
	if gzipped {
		h = gzipAnswers(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// gzipped counts the answers gzipAnswers compressed.
var gzipped atomic.Int64

// gzipAnswers compresses answers when the request accepts gzip.
func gzipAnswers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			next.ServeHTTP(w, r)
			return
		}
		gzipped.Add(1)
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		var b bytes.Buffer
		z := gzip.NewWriter(&b)
		_, _ = z.Write(rec.Body.Bytes())
		_ = z.Close()
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.Code)
		_, _ = w.Write(b.Bytes())
	})
}

// guardMCPClient speaks raw Streamable HTTP JSON-RPC as one principal.
type guardMCPClient struct {
	url, key, sid string
}

func (c *guardMCPClient) send(t *testing.T, body string) (int, http.Header, string) {
	t.Helper()
	header := []string{"Authorization", "Bearer " + c.key, "Content-Type", "application/json",
		"Accept", "application/json, text/event-stream", "Mcp-Protocol-Version", "2025-06-18"}
	if c.sid != "" {
		header = append(header, "Mcp-Session-Id", c.sid)
	}
	return guardDo(t, http.MethodPost, c.url, body, header...)
}

func (c *guardMCPClient) initialize(t *testing.T) {
	t.Helper()
	code, h, body := c.send(t, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{}},"clientInfo":{"name":"e2e","version":"1"}}}`)
	if code != 200 || h.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize: %d %s", code, body)
	}
	c.sid = h.Get("Mcp-Session-Id")
	if code, _, body := c.send(t, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); code != 202 {
		t.Fatalf("initialized: %d %s", code, body)
	}
}

// result finds the JSON-RPC answer with id in a JSON or SSE body.
func guardRPCAnswer(t *testing.T, body string, id int) map[string]any {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(line), "data: ")), &m) == nil && m["id"] == float64(id) {
			return m
		}
	}
	t.Fatalf("no answer %d in %q", id, body)
	return nil
}

func (c *guardMCPClient) call(t *testing.T, tool, args string) (string, bool, string) {
	t.Helper()
	_, h, body := c.send(t, fmt.Sprintf(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, tool, args))
	m := guardRPCAnswer(t, body, 5)
	res, _ := m["result"].(map[string]any)
	if res == nil {
		return fmt.Sprint(m["error"]), true, h.Get("X-Nomos-Action-Id")
	}
	content, _ := res["content"].([]any)
	first, _ := content[0].(map[string]any)
	isErr, _ := res["isError"].(bool)
	return fmt.Sprint(first["text"]), isErr, h.Get("X-Nomos-Action-Id")
}

func TestGuardMCPE2E(t *testing.T) {
	s := startServer(t, guardMCPCaddyfile, map[string]string{"guard-mcp.yaml": guardMCPPolicy},
		"T_ALICE_KEY=alice-key", "T_BOB_KEY=bob-key", "T_REVIEWER_KEY=reviewer-key",
		"T_SSE="+newGuardedMCP(t, false, false), "T_JSON="+newGuardedMCP(t, true, true))
	for _, mode := range []string{"sse", "json"} {
		t.Run(mode, func(t *testing.T) {
			alice := &guardMCPClient{url: s.base + "/" + mode + "/mcp", key: "alice-key"}
			alice.initialize(t)

			_, h, body := alice.send(t, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
			if mode == "sse" && !strings.HasPrefix(h.Get("Content-Type"), "text/event-stream") {
				t.Errorf("tools/list answered %q, want an SSE stream", h.Get("Content-Type"))
			}
			tools, _ := guardRPCAnswer(t, body, 2)["result"].(map[string]any)["tools"].([]any)
			var names []string
			for _, tool := range tools {
				names = append(names, fmt.Sprint(tool.(map[string]any)["name"]))
			}
			if strings.Join(names, ",") != "ask,echo,pay" {
				t.Fatalf("tools/list shows %v, want ask,echo,pay", names)
			}

			if text, isErr, id := alice.call(t, "echo", `{"text":"hi"}`); isErr || text != "echo hi" {
				t.Fatalf("allowed call: %q %v", text, isErr)
			} else if ev := completedAuditEvents(t, s.auditDB(), id); ev["action.decision"].Decision != "ALLOW" || ev["action.completed"].Classification != "SUCCESS" {
				t.Fatalf("allowed call audit: %v", ev)
			}
			if text, isErr, _ := alice.call(t, "wipe", `{}`); !isErr || !strings.Contains(text, "unknown tool: wipe") {
				t.Fatalf("hidden tool: %q", text)
			}
			if refusal := guardRefusal(t, s.auditDB(), "mcp://remote/wipe", alice.sid); refusal.Decision != "DENY" ||
				refusal.Classification != "VALIDATION_ERROR" || refusal.Metadata["transport"] != "nomos_guard" ||
				refusal.Metadata["downstream_transport"] != "streamable_http" || refusal.Metadata["guard"] != "remote-"+mode {
				t.Fatalf("hidden tool refusal audit: %+v", refusal)
			}
			if text, isErr, _ := alice.call(t, "pay", `{"note":"no amount"}`); !isErr || text != "Nomos decision: DENY (deny_by_default). Nothing was done." {
				t.Fatalf("deny: %q", text)
			}
			text, isErr, id := alice.call(t, "pay", `{"amount":250}`)
			if !isErr || !strings.HasPrefix(text, "Nomos decision: REQUIRE_APPROVAL") {
				t.Fatalf("approval: %q", text)
			}
			ev := auditEvents(t, s.auditDB(), id)["action.decision"]
			if ev.Decision != "REQUIRE_APPROVAL" || ev.Metadata["transport"] != "nomos_guard" || ev.Metadata["downstream_transport"] != "streamable_http" {
				t.Fatalf("approval audit: %+v", ev)
			}
			approval := text[strings.Index(text, "apr_"):]
			approval = approval[:strings.IndexAny(approval, ". ")]
			reviewer := client{base: s.base, apiKey: "reviewer-key"}
			if code, resp := reviewer.post(t, "/approvals/decide", map[string]any{"approval_id": approval, "decision": "APPROVE"}); code != 200 {
				t.Fatalf("decide: %d %v", code, resp)
			}
			if text, isErr, _ := alice.call(t, "pay", fmt.Sprintf(`{"amount":999,"approval_id":%q}`, approval)); !isErr {
				t.Fatalf("approval applied to other arguments: %q", text)
			}
			if text, isErr, _ := alice.call(t, "pay", fmt.Sprintf(`{"amount":250,"approval_id":%q}`, approval)); isErr || text != "paid 250" {
				t.Fatalf("approved retry: %q %v", text, isErr)
			}

			if mode == "json" && gzipped.Load() == 0 {
				t.Error("the JSON upstream never compressed an answer: compression was not exercised")
			}
			if mode == "sse" { // the server's request rides the POST's stream
				// No rule allows mcp.sample: the client never sees the
				// request, and the server gets the refusal as its answer.
				_, _, body := alice.send(t, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ask","arguments":{"text":"q"}}}`)
				text := fmt.Sprint(guardRPCAnswer(t, body, 5)["result"])
				if strings.Contains(body, `"method":"sampling/createMessage"`) || !strings.Contains(text, "sampling refused") || !strings.Contains(text, "Nomos decision: DENY") {
					t.Fatalf("sampling: %s", body)
				}
			}

			bob := &guardMCPClient{url: alice.url, key: "bob-key", sid: alice.sid}
			if code, _, body := bob.send(t, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`); code != 403 || !strings.Contains(body, "session_identity_mismatch") {
				t.Fatalf("hijacked session: %d %s", code, body)
			}
		})
	}
}

// guardRefusal is the audited refusal of resource on session sid.
func guardRefusal(t *testing.T, dbPath, resource, sid string) auditEvent {
	t.Helper()
	db := openDB(t, dbPath)
	defer db.Close()
	rows, err := db.Query(`SELECT json FROM audit_events WHERE event_type = 'action.decision' ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var raw string
		var ev auditEvent
		var where struct {
			Resource string `json:"resource_normalized"`
		}
		if rows.Scan(&raw) != nil || json.Unmarshal([]byte(raw), &ev) != nil || json.Unmarshal([]byte(raw), &where) != nil {
			t.Fatal("audit row")
		}
		if where.Resource == resource && ev.Metadata["downstream_session_id"] == sid {
			return ev
		}
	}
	t.Fatalf("no decision on %s in session %s", resource, sid)
	return auditEvent{}
}
