package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// builtinsHTTPCaddyfile offers the built-in tools on nomos_mcp (no
// upstream) under `nomos run`; `nomos mcp serve --http` reads the same
// file and synthesizes its own server from the nomos app.
const builtinsHTTPCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	nomos {
		policy default {
			bundle builtins.yaml
		}
		identity {
			api_key {env.T_BUILTINS_KEY} tester
		}
		approvals {
			ttl 15m
			approvers reviewer
		}
		executor {
			workspace_root ws
		}
	}
}

http://127.0.0.1:{PORT} {
	handle /mcp {
		nomos_mcp {
			builtins
		}
	}
	handle {
		nomos_api
	}
}
`

// bearer adds the API key to every request of the MCP client.
type bearer struct{ key string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return http.DefaultTransport.RoundTrip(r)
}

func builtinsFiles() map[string]string {
	return map[string]string{
		"builtins.yaml": stdioBundle, "ws/README.md": "# http workspace\n",
		"ws/.env": "API_TOKEN=do-not-leak\n", "ws/docs/keep": "",
	}
}

// TestBuiltinsOverHTTP: the built-in tools answer over Streamable HTTP,
// governed as over stdio (allow, deny, approval round trip) and audited
// with downstream_transport streamable_http, both on a nomos_mcp route of
// `nomos run` and under `nomos mcp serve --http`.
func TestBuiltinsOverHTTP(t *testing.T) {
	t.Run("nomos run", func(t *testing.T) {
		s := startServer(t, builtinsHTTPCaddyfile, builtinsFiles(), "T_BUILTINS_KEY=builtins-key")
		exerciseBuiltins(t, s, s.base+"/mcp")
	})
	t.Run("nomos mcp serve", func(t *testing.T) {
		s, url := startMCPServe(t)
		exerciseBuiltins(t, s, url)
	})
}

// startMCPServe runs `nomos mcp serve --http` on a free loopback port.
func startMCPServe(t *testing.T) (*server, string) {
	t.Helper()
	files := builtinsFiles()
	files["Caddyfile"] = strings.NewReplacer("{PORT}", fmt.Sprint(freePort(t)), "{ADMIN}", fmt.Sprint(freePort(t))).Replace(builtinsHTTPCaddyfile)
	dir := t.TempDir()
	writeFiles(t, dir, files)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := &server{t: t, dir: dir, logs: new(lockedBuffer), dataDir: filepath.Join(dir, "data")}
	s.cmd = exec.Command(nomosBinary(t), "mcp", "serve", "--http", "--listen", listen, "--config", "Caddyfile")
	s.cmd.Dir = dir
	s.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+s.dataDir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "HOME="+dir, "T_BUILTINS_KEY=builtins-key")
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	s.base = "http://" + listen
	s.waitHealthy()
	return s, s.base + "/mcp"
}

func exerciseBuiltins(t *testing.T, s *server, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "nomos-e2e", Version: "1"}, nil)
	tr := &mcpsdk.StreamableClientTransport{Endpoint: url, HTTPClient: &http.Client{Transport: bearer{"builtins-key"}}, MaxRetries: -1}
	cs, err := client.Connect(ctx, tr, nil)
	if err != nil {
		t.Fatalf("connect: %v\nlogs:\n%s", err, s.logs.String())
	}
	defer cs.Close()
	call := func(name string, args map[string]any) (string, bool, map[string]any) {
		t.Helper()
		res, err := cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var text strings.Builder
		for _, c := range res.Content {
			if tc, ok := c.(*mcpsdk.TextContent); ok {
				text.WriteString(tc.Text)
			}
		}
		return text.String(), res.IsError, res.Meta
	}

	list, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	for _, want := range []string{"nomos_fs_read", "nomos_fs_write", "nomos_apply_patch", "nomos_exec", "nomos_http_request", "nomos_capabilities"} {
		if !slices.Contains(names, want) {
			t.Errorf("tools/list lacks %s: %v", want, names)
		}
	}

	text, isErr, meta := call("nomos_fs_read", map[string]any{"path": "README.md"})
	if isErr || text != "# http workspace\n" {
		t.Fatalf("read inside the workspace: %q isError=%v", text, isErr)
	}
	readID, _ := meta["nomos/action_id"].(string)
	text, isErr, _ = call("nomos_fs_read", map[string]any{"path": ".env"})
	if !isErr || !strings.Contains(text, "Nomos decision: DENY (deny_by_rule)") || strings.Contains(text, "do-not-leak") {
		t.Fatalf(".env: %q isError=%v", text, isErr)
	}
	text, isErr, _ = call("nomos_exec", map[string]any{"argv": []string{"rm", "-rf", "docs"}})
	if !isErr || !strings.Contains(text, "Nomos decision: DENY") {
		t.Fatalf("rm: %q isError=%v", text, isErr)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "ws", "docs", "keep")); err != nil {
		t.Fatalf("a denied command ran: %v", err)
	}

	args := map[string]any{"path": "docs/notes.md", "content": "approved over http\n"}
	text, isErr, meta = call("nomos_fs_write", args)
	approval, _ := meta["nomos/approval_id"].(string)
	if !isErr || !strings.Contains(text, "REQUIRE_APPROVAL") || !strings.HasPrefix(approval, "apr_") {
		t.Fatalf("write under docs/: %q isError=%v meta=%v", text, isErr, meta)
	}
	store := filepath.Join(s.dataDir, "caddy", "nomos", "approvals.db")
	if out, errOut, code := runCLI(t, s.dir, "approvals", "approve", approval, "--path", store, "--approver", "reviewer"); code != 0 {
		t.Fatalf("approvals approve: %d %s %s", code, out, errOut)
	}
	args["approval_id"] = approval
	text, isErr, _ = call("nomos_fs_write", args)
	if data, _ := os.ReadFile(filepath.Join(s.dir, "ws", "docs", "notes.md")); isErr || string(data) != "approved over http\n" {
		t.Fatalf("retry with approval_id: %q isError=%v, file %q", text, isErr, data)
	}

	text, isErr, _ = call("nomos_capabilities", map[string]any{})
	var caps map[string]any
	if isErr || json.Unmarshal([]byte(text), &caps) != nil {
		t.Fatalf("capabilities: %q", text)
	}
	if id, _ := caps["identity"].(map[string]any); id["principal"] != "tester" {
		t.Errorf("capabilities name %v, want the authenticated principal tester", caps["identity"])
	}

	_, err = cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: "no_such_tool"})
	if err == nil || !strings.Contains(err.Error(), "unknown tool: no_such_tool") {
		t.Errorf("unknown tool: %v", err)
	}
	assertEventTypes(t, s.auditDB(), readID, "trace.start", "action.decision", "action.completed", "trace.end")
	assertBuiltinsAudit(t, s.auditDB())
}

// assertBuiltinsAudit: every built-in decision names the authenticated
// principal and the streamable_http transport with its session.
func assertBuiltinsAudit(t *testing.T, path string) {
	t.Helper()
	db := openDB(t, path)
	defer db.Close()
	rows, err := db.Query(`SELECT json FROM audit_events WHERE event_type = 'action.decision'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := map[string]string{}
	for rows.Next() {
		var raw string
		if err := rows.Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var ev struct {
			ActionType string         `json:"action_type"`
			Resource   string         `json:"resource_normalized"`
			Decision   string         `json:"decision"`
			Principal  string         `json:"principal"`
			Meta       map[string]any `json:"executor_metadata"`
		}
		if err := json.Unmarshal([]byte(raw), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Principal != "tester" || ev.Meta["downstream_transport"] != "streamable_http" || ev.Meta["downstream_session_id"] == "" {
			t.Errorf("%s %s audited as %s over %v (session %v)", ev.ActionType, ev.Resource, ev.Principal, ev.Meta["downstream_transport"], ev.Meta["downstream_session_id"])
		}
		seen[ev.ActionType+" "+ev.Resource] += ev.Decision + " "
	}
	for key, want := range map[string]string{
		"fs.read file://workspace/README.md":      "ALLOW ",
		"fs.read file://workspace/.env":           "DENY ",
		"fs.write file://workspace/docs/notes.md": "REQUIRE_APPROVAL ALLOW ",
	} {
		if seen[key] != want {
			t.Errorf("%s decided %q, want %q (all: %v)", key, seen[key], want, seen)
		}
	}
}

// TestBuiltinsNeedAnExecutor: nomos_mcp with builtins refuses to load
// without the app's executor, naming what is missing.
func TestBuiltinsNeedAnExecutor(t *testing.T) {
	cf := strings.Replace(builtinsHTTPCaddyfile, "\t\texecutor {\n\t\t\tworkspace_root ws\n\t\t}\n", "", 1)
	if cf == builtinsHTTPCaddyfile {
		t.Fatal("the executor block was not removed")
	}
	dir := t.TempDir()
	files := builtinsFiles()
	files["Caddyfile"] = strings.NewReplacer("{PORT}", "1", "{ADMIN}", "2").Replace(cf)
	writeFiles(t, dir, files)
	t.Setenv("T_BUILTINS_KEY", "builtins-key")
	out, errOut, code := runCLI(t, dir, "validate", "--config", "Caddyfile", "--adapter", "caddyfile")
	if code == 0 || !strings.Contains(out+errOut, "built-in tools need the nomos app's executor") {
		t.Fatalf("validate: exit %d, want a refusal naming the executor:\n%s%s", code, out, errOut)
	}
}
