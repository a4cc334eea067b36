package mcpstdio

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/jsonrpc"
	"github.com/caddy-nomos/nomos/internal/mcpbuiltins"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy/action"
)

// fakeProcessor records envelopes and answers with a canned response.
type fakeProcessor struct {
	mu     sync.Mutex
	bodies []map[string]any
	ids    []action.Identity
	answer func(env map[string]any) (*service.Response, error)
	// block makes Process wait for its context (cancellation tests).
	block   bool
	blocked chan struct{}
	metas   []map[string]any
	rejects []string // class: reason
}

func (f *fakeProcessor) Reject(_ context.Context, _ *action.Envelope, _ action.Identity, meta map[string]any, class, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.metas = append(f.metas, meta)
	f.rejects = append(f.rejects, class+": "+reason)
}

func (f *fakeProcessor) ProcessWith(ctx context.Context, body []byte, id action.Identity, meta map[string]any) (*service.Response, error) {
	f.mu.Lock()
	f.metas = append(f.metas, meta)
	f.mu.Unlock()
	var env map[string]any
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	if _, err := action.DecodeEnvelope(body); err != nil {
		return nil, service.Errorf(400, service.CodeValidation, "%v", err)
	}
	f.mu.Lock()
	f.bodies, f.ids = append(f.bodies, env), append(f.ids, id)
	f.mu.Unlock()
	if f.block {
		close(f.blocked)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if f.answer != nil {
		return f.answer(env)
	}
	return &service.Response{Decision: "ALLOW", ActionID: env["action_id"].(string), Output: "ok"}, nil
}

func (f *fakeProcessor) last(t *testing.T) map[string]any {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) == 0 {
		t.Fatal("no action was processed")
	}
	return f.bodies[len(f.bodies)-1]
}

func (f *fakeProcessor) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.bodies)
}

// session drives a Server over pipes, one JSON message per line.
type session struct {
	t    *testing.T
	in   *io.PipeWriter
	out  chan map[string]any
	raw  chan string
	done chan error
}

func startSession(t *testing.T, cfg Config) *session {
	t.Helper()
	if cfg.Identity.Principal == "" {
		cfg.Identity = action.Identity{Principal: "alice", Agent: "agent-1"}
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &session{t: t, in: inW, out: make(chan map[string]any, 64), raw: make(chan string, 64), done: make(chan error, 1)}
	go func() { s.done <- srv.Serve(context.Background(), inR, outW); _ = outW.Close() }()
	go func() {
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 1<<20), 1<<22)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				s.raw <- "NOT JSON: " + sc.Text()
				continue
			}
			s.raw <- sc.Text()
			s.out <- m
		}
		close(s.out)
	}()
	t.Cleanup(func() { _ = inW.Close() })
	return s
}

func (s *session) send(msg string) {
	s.t.Helper()
	if _, err := io.WriteString(s.in, msg+"\n"); err != nil {
		s.t.Fatal(err)
	}
}

// next returns the next message written to stdout.
func (s *session) next() map[string]any {
	s.t.Helper()
	select {
	case m, ok := <-s.out:
		if !ok {
			s.t.Fatal("stdout closed")
		}
		return m
	case <-time.After(5 * time.Second):
		s.t.Fatal("no message on stdout within 5s")
	}
	return nil
}

func (s *session) call(id int, name string, args any) map[string]any {
	s.t.Helper()
	a, _ := json.Marshal(args)
	s.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, id, name, a))
	m := s.next()
	if m["id"] != float64(id) {
		s.t.Fatalf("answer to %v, want %d: %v", m["id"], id, m)
	}
	return m
}

func resultText(t *testing.T, m map[string]any) (string, bool) {
	t.Helper()
	r, ok := m["result"].(map[string]any)
	if !ok {
		t.Fatalf("no result: %v", m)
	}
	content := r["content"].([]any)
	text := content[0].(map[string]any)["text"].(string)
	isErr, _ := r["isError"].(bool)
	return text, isErr
}

var allTypes = []string{"fs.read", "fs.write", "net.http_request", "process.exec", "repo.apply_patch"}

func TestBuiltinToolsBecomeActions(t *testing.T) {
	cases := []struct {
		tool     string
		args     map[string]any
		typ, res string
		params   string
		approval string
	}{
		{mcpbuiltins.ToolFSRead, map[string]any{"path": "./src/main.go"}, "fs.read", "file://workspace/src/main.go", `{}`, ""},
		{mcpbuiltins.ToolFSRead, map[string]any{"path": "README.md", "approval_id": "apr_1"}, "fs.read", "file://workspace/README.md", `{}`, "apr_1"},
		{mcpbuiltins.ToolFSWrite, map[string]any{"path": "a.txt", "content": "hi"}, "fs.write", "file://workspace/a.txt", `{"content":"hi"}`, ""},
		{mcpbuiltins.ToolApplyPatch, map[string]any{"patch": "--- a/x\n+++ b/x\n"}, "repo.apply_patch", "repo://local/workspace", `{"patch":"--- a/x\n+++ b/x\n"}`, ""},
		{mcpbuiltins.ToolApplyPatch, map[string]any{"path": "x", "content": "y"}, "repo.apply_patch", "repo://local/workspace", `{"content":"y","path":"x"}`, ""},
		{mcpbuiltins.ToolExec, map[string]any{"argv": []string{"git", "status"}}, "process.exec", "file://workspace/git", `{"argv":["git","status"]}`, ""},
		{mcpbuiltins.ToolExec, map[string]any{"argv": []string{"/usr/bin/go", "test"}, "cwd": "src"}, "process.exec", "file://workspace/src/go", `{"argv":["/usr/bin/go","test"],"cwd":"src"}`, ""},
		{mcpbuiltins.ToolHTTPRequest, map[string]any{"url": "https://API.example.com/v1/x", "method": "post", "body": "{}"}, "net.http_request", "url://API.example.com/v1/x", `{"body":"{}","method":"POST"}`, ""},
	}
	for i, c := range cases {
		t.Run(c.tool, func(t *testing.T) {
			p := new(fakeProcessor)
			s := startSession(t, Config{Processor: p, ActionTypes: allTypes})
			text, isErr := resultText(t, s.call(i+1, c.tool, c.args))
			if isErr || text != "ok" {
				t.Fatalf("result %q isError=%v", text, isErr)
			}
			env := p.last(t)
			params, _ := json.Marshal(env["params"])
			if env["action_type"] != c.typ || env["resource"] != c.res || string(params) != c.params {
				t.Fatalf("envelope %v, want %s %s %s", env, c.typ, c.res, c.params)
			}
			ext, _ := json.Marshal(env["context"])
			if c.approval != "" && !strings.Contains(string(ext), `"approval":{"approval_id":"`+c.approval+`"}`) {
				t.Fatalf("approval extension missing: %s", ext)
			}
			if c.approval == "" && strings.Contains(string(ext), "approval") {
				t.Fatalf("unexpected approval extension: %s", ext)
			}
			if p.ids[0].Principal != "alice" || p.ids[0].Agent != "agent-1" {
				t.Fatalf("identity %+v", p.ids[0])
			}
		})
	}
}

func TestBuiltinArgumentsRefusedBeforeAnyAction(t *testing.T) {
	cases := []struct {
		tool, args, want string
	}{
		{mcpbuiltins.ToolFSRead, `{"path":"/etc/passwd"}`, "absolute host paths"},
		{mcpbuiltins.ToolFSRead, `{"path":"../x"}`, "path"},
		{mcpbuiltins.ToolFSRead, `{"Path":"a"}`, "unknown argument"},
		{mcpbuiltins.ToolFSRead, `{}`, "required"},
		{mcpbuiltins.ToolFSWrite, `{"path":"a"}`, "content"},
		{mcpbuiltins.ToolApplyPatch, `{"patch":"x","path":"a","content":"b"}`, "either patch"},
		{mcpbuiltins.ToolExec, `{"argv":[]}`, "argv"},
		{mcpbuiltins.ToolExec, `{"argv":["ls"],"cwd":"../out"}`, "path"},
		{mcpbuiltins.ToolHTTPRequest, `{"url":"http://example.com/"}`, "https"},
		{mcpbuiltins.ToolHTTPRequest, `{"url":"https://example.com/x?token=1"}`, "query"},
		{mcpbuiltins.ToolHTTPRequest, `{"url":"https://example.com/","headers":{"a":1}}`, "headers"},
	}
	p := new(fakeProcessor)
	s := startSession(t, Config{Processor: p, ActionTypes: allTypes})
	for i, c := range cases {
		s.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, i+1, c.tool, c.args))
		text, isErr := resultText(t, s.next())
		if !isErr || !strings.Contains(text, c.want) || !strings.Contains(text, "Nothing was done") {
			t.Errorf("%s %s: %q isError=%v, want mention of %q", c.tool, c.args, text, isErr, c.want)
		}
	}
	// Duplicate and case-variant keys are refused for the whole message, as
	// nomos_mcp refuses them: the id is kept, nothing runs.
	for i, args := range []string{`{"path":"a","path":"b"}`, `{"path":"a","\u0050ath":"b"}`} {
		s.send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, 100+i, mcpbuiltins.ToolFSRead, args))
		resp := s.next()
		e, _ := resp["error"].(map[string]any)
		if resp["id"] != float64(100+i) || !strings.Contains(fmt.Sprint(e["message"]), "duplicate object key") {
			t.Errorf("%s: %v", args, resp)
		}
	}
	if n := p.count(); n != 0 {
		t.Fatalf("%d invalid calls reached the pipeline", n)
	}
	// Each refusal is still recorded, labelled with the stdio transport.
	s.send(`{"jsonrpc":"2.0","id":99,"method":"tools/call","params":{"name":"no_such_tool","arguments":{}}}`)
	s.next()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.rejects) != len(cases)+1 || !strings.HasPrefix(p.rejects[len(cases)], "VALIDATION_ERROR: unknown tool: no_such_tool") {
		t.Fatalf("recorded refusals: %q", p.rejects)
	}
	for _, m := range p.metas {
		if m["downstream_transport"] != "stdio" {
			t.Fatalf("refusal recorded without the stdio transport: %v", m)
		}
	}
}

func TestDecisionsAreReadableToolResults(t *testing.T) {
	zero, three := 0, 3
	cases := []struct {
		name    string
		resp    service.Response
		isError bool
		want    []string
	}{
		{"deny", service.Response{Decision: "DENY", Reason: "deny_by_rule"}, true, []string{"Nomos decision: DENY (deny_by_rule)", "Nothing was done"}},
		{"approval", service.Response{Decision: "REQUIRE_APPROVAL", Reason: "require_approval_by_rule", ApprovalID: "apr_9", ApprovalExpiresAt: "2030-01-01T00:00:00Z"},
			true, []string{"REQUIRE_APPROVAL", "approval_id: apr_9", "2030-01-01", "approval_id set to this id"}},
		{"exec ok", service.Response{Decision: "ALLOW", ExitCode: &zero, Stdout: "out\n", Stderr: "warn"}, false, []string{"exit code: 0", "--- stdout ---\nout\n", "--- stderr ---\nwarn"}},
		{"exec failed", service.Response{Decision: "ALLOW", ExitCode: &three}, true, []string{"exit code: 3"}},
		{"http", service.Response{Decision: "ALLOW", StatusCode: 404, Output: "nope", Truncated: true}, false, []string{"HTTP status: 404", "nope", "truncated"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &fakeProcessor{answer: func(map[string]any) (*service.Response, error) { r := c.resp; return &r, nil }}
			s := startSession(t, Config{Processor: p, ActionTypes: allTypes})
			text, isErr := resultText(t, s.call(i+1, mcpbuiltins.ToolFSRead, map[string]any{"path": "a"}))
			if isErr != c.isError {
				t.Fatalf("isError=%v: %s", isErr, text)
			}
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Fatalf("%q lacks %q", text, w)
				}
			}
		})
	}
	p := &fakeProcessor{answer: func(map[string]any) (*service.Response, error) {
		return nil, service.Errorf(500, service.CodeAudit, "could not record authorization decision; action not authorized")
	}}
	s := startSession(t, Config{Processor: p, ActionTypes: allTypes})
	text, isErr := resultText(t, s.call(1, mcpbuiltins.ToolFSRead, map[string]any{"path": "a"}))
	if !isErr || !strings.Contains(text, "DENY (audit_error") {
		t.Fatalf("pipeline failure must fail closed with a readable DENY: %q", text)
	}
}

func TestServeWithoutGateway(t *testing.T) {
	p := new(fakeProcessor)
	s := startSession(t, Config{Processor: p, ActionTypes: []string{"fs.read"}})
	s.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	init := s.next()["result"].(map[string]any)
	if init["protocolVersion"] != "2025-06-18" || init["capabilities"].(map[string]any)["tools"] == nil {
		t.Fatalf("initialize: %v", init)
	}
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	s.send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	var names []string
	for _, tool := range s.next()["result"].(map[string]any)["tools"].([]any) {
		names = append(names, tool.(map[string]any)["name"].(string))
	}
	if strings.Join(names, ",") != "nomos_fs_read,nomos_capabilities" {
		t.Fatalf("tools/list shows %v; only the executor's types and nomos_capabilities are usable", names)
	}
	s.send(`{"jsonrpc":"2.0","id":3,"method":"ping"}`)
	if m := s.next(); m["id"] != float64(3) || m["result"] == nil {
		t.Fatalf("ping: %v", m)
	}
	s.send(`{"jsonrpc":"2.0","id":4,"method":"resources/list"}`)
	if m := s.next(); m["error"].(map[string]any)["code"] != float64(jsonrpc.CodeMethodNotFound) {
		t.Fatalf("unknown method: %v", m)
	}
	s.send(`not json`)
	if m := s.next(); m["error"].(map[string]any)["code"] != float64(jsonrpc.CodeParseError) {
		t.Fatalf("parse error: %v", m)
	}
	s.send(`[{"jsonrpc":"2.0","id":5,"method":"ping"}]`)
	if m := s.next(); m["error"] == nil {
		t.Fatalf("batch: %v", m)
	}
	text, _ := resultText(t, s.call(6, mcpbuiltins.ToolCapabilities, map[string]any{}))
	var caps map[string]any
	if err := json.Unmarshal([]byte(text), &caps); err != nil || caps["identity"].(map[string]any)["principal"] != "alice" {
		t.Fatalf("capabilities: %s", text)
	}
	if p.count() != 0 {
		t.Fatal("nomos_capabilities must not be an action")
	}
	_ = s.in.Close()
	if err := <-s.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for {
		select {
		case line := <-s.raw:
			if strings.HasPrefix(line, "NOT JSON") {
				t.Fatalf("stdout is not protocol-pure: %s", line)
			}
		default:
			return
		}
	}
}

func TestCancelledBuiltinCallIsNotAnswered(t *testing.T) {
	p := &fakeProcessor{block: true, blocked: make(chan struct{})}
	s := startSession(t, Config{Processor: p, ActionTypes: allTypes})
	s.send(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"nomos_fs_read","arguments":{"path":"a"}}}`)
	<-p.blocked
	s.send(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}`)
	s.send(`{"jsonrpc":"2.0","id":8,"method":"ping"}`)
	if m := s.next(); m["id"] != float64(8) {
		t.Fatalf("the cancelled request was answered: %v", m)
	}
}

func TestOverlongLineIsRefusedAndSkipped(t *testing.T) {
	s := startSession(t, Config{Processor: new(fakeProcessor), MaxLineBytes: 64})
	s.send(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"` + strings.Repeat("x", 200) + `"}}`)
	if m := s.next(); m["error"] == nil {
		t.Fatalf("overlong line: %v", m)
	}
	s.send(`{"jsonrpc":"2.0","id":2,"method":"ping"}`)
	if m := s.next(); m["id"] != float64(2) {
		t.Fatalf("next message after an overlong line: %v", m)
	}
}

// fakeGateway answers like mcp.Gateway: initialize with a session id,
// tools/list as JSON, tools/call as an SSE stream, and 404 for an unknown
// session.
func fakeGateway(t *testing.T, seen *[]string, mu *sync.Mutex) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m message
		_ = json.Unmarshal(body, &m)
		mu.Lock()
		*seen = append(*seen, r.Method+" "+m.Method+" "+r.Header.Get(mcp.HeaderSessionID))
		mu.Unlock()
		switch {
		case r.Method == http.MethodGet:
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			fmt.Fprint(w, ": keep-alive\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n")
			<-r.Context().Done()
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		case m.Method == "initialize":
			w.Header().Set(mcp.HeaderSessionID, "sess-1")
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-06-18","capabilities":{"prompts":{}},"serverInfo":{"name":"retail"}}}`, m.ID)
		case r.Header.Get(mcp.HeaderSessionID) != "sess-1":
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"decision":"DENY","reason":"invalid_session: unknown or terminated session"}`)
		case m.Method == "tools/list":
			fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"lookup_order","inputSchema":{"type":"object"}},{"name":"nomos_exec","inputSchema":{"type":"object"}}]}}`, m.ID)
		case m.Method == "tools/call":
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
			fmt.Fprint(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\n")
			fmt.Fprint(w, "data: \"params\":{\"progress\":1}}\n\n")
			fmt.Fprintf(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":%s,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"upstream\"}]}}\n\n", m.ID)
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	})
}

func TestBridgeRelaysToGateway(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	s := startSession(t, Config{Processor: new(fakeProcessor), ActionTypes: allTypes, Gateway: fakeGateway(t, &seen, &mu)})
	s.send(`{"jsonrpc":"2.0","id":9,"method":"prompts/list"}`)
	if m := s.next(); !strings.Contains(fmt.Sprint(m["error"]), "invalid_session") {
		t.Fatalf("an HTTP refusal must become a JSON-RPC error: %v", m)
	}
	s.send(`{"jsonrpc":"2.0","id":10,"method":"tools/list"}`)
	if m := s.next(); len(m["result"].(map[string]any)["tools"].([]any)) != 6 {
		t.Fatalf("a failed upstream listing must still list the built-in tools: %v", m)
	}
	s.send(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}`)
	init := s.next()["result"].(map[string]any)
	caps := init["capabilities"].(map[string]any)
	if init["serverInfo"].(map[string]any)["name"] != "nomos" || caps["tools"] == nil || caps["prompts"] == nil {
		t.Fatalf("initialize not decorated: %v", init)
	}
	if m := s.next(); m["method"] != "notifications/tools/list_changed" {
		t.Fatalf("GET stream not relayed: %v", m)
	}
	s.send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	s.send(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	var names []string
	for _, tool := range s.next()["result"].(map[string]any)["tools"].([]any) {
		names = append(names, tool.(map[string]any)["name"].(string))
	}
	if got := strings.Join(names, ","); got != "nomos_fs_read,nomos_fs_write,nomos_apply_patch,nomos_exec,nomos_http_request,nomos_capabilities,lookup_order" {
		t.Fatalf("tools/list: %s (an upstream tool must not shadow a built-in)", got)
	}
	s.send(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"lookup_order","arguments":{}}}`)
	if m := s.next(); m["method"] != "notifications/progress" {
		t.Fatalf("SSE event not relayed first: %v", m)
	}
	if text, _ := resultText(t, s.next()); text != "upstream" {
		t.Fatalf("upstream result: %s", text)
	}
	_ = s.in.Close()
	if err := <-s.done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	joined := strings.Join(seen, "\n")
	for _, want := range []string{"POST notifications/initialized sess-1", "GET  sess-1", "DELETE  sess-1"} {
		if !strings.Contains(joined, want) {
			t.Fatalf("gateway did not see %q:\n%s", want, joined)
		}
	}
}
