package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// stdioBundle governs the built-in tools next to examples/policies/retail.yaml.
const stdioBundle = `version: v1
rules:
  - id: read-workspace
    action_type: fs.read
    resource: file://workspace/**
    decision: ALLOW
  - id: deny-dotenv
    action_type: "*"
    resource: file://workspace/**/.env
    decision: DENY
  - id: approve-docs
    action_type: fs.write
    resource: file://workspace/docs/**
    decision: REQUIRE_APPROVAL
  - id: echo-only
    action_type: process.exec
    resource: file://workspace/**
    decision: ALLOW
    exec_match:
      argv_patterns:
        - [echo, "**"]
`

// The audit stdout sink is configured on purpose: in stdio mode it must
// land on stderr, never in the protocol stream.
const stdioCaddyfile = `{
	nomos {
		environment dev
		policy default {
			bundle {RETAIL_POLICY}
			bundle builtins.yaml
		}
		audit {
			sink stdout
			sink sqlite
		}
		approvals {
			ttl 15m
			approvers reviewer
		}
		executor {
			workspace_root ws
		}
		upstream retail {
			command {RETAIL_MCP}
		}
	}
}
`

// stdioRun is one `nomos mcp stdio` child and its MCP client session.
type stdioRun struct {
	dir, dataDir string
	cmd          *exec.Cmd
	stderr       *lockedBuffer
	stdout       *lockedBuffer
	cs           *mcpsdk.ClientSession
}

func stdioRetailMCP(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "retail-mcp")
	src, err := filepath.Abs("../../examples/retail/retail-mcp")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("go", "build", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("building retail-mcp: %v\n%s", err, out)
	}
	return bin
}

func startStdio(t *testing.T) *stdioRun {
	t.Helper()
	return startStdioConfig(t, stdioCaddyfile)
}

// startStdioConfig runs nomos mcp stdio on a Caddyfile shaped like
// stdioCaddyfile.
func startStdioConfig(t *testing.T, caddyfile string) *stdioRun {
	t.Helper()
	bin := nomosBinary(t)
	dir := t.TempDir()
	policy, err := filepath.Abs("../../examples/policies/retail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cf := strings.NewReplacer("{RETAIL_POLICY}", policy, "{RETAIL_MCP}", stdioRetailMCP(t, dir)).Replace(caddyfile)
	writeFiles(t, dir, map[string]string{
		"Caddyfile": cf, "builtins.yaml": stdioBundle,
		"ws/README.md": "# stdio workspace\n", "ws/.env": "API_TOKEN=do-not-leak\n", "ws/docs/keep": "",
	})
	r := &stdioRun{dir: dir, dataDir: filepath.Join(dir, "data"), stderr: new(lockedBuffer), stdout: new(lockedBuffer)}
	r.cmd = exec.Command(bin, "mcp", "stdio", "--config", "Caddyfile", "--principal", "alice", "--agent", "claude-code")
	r.cmd.Dir = dir
	r.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+r.dataDir, "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "HOME="+dir)
	r.cmd.Stderr = r.stderr
	stdin, err := r.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.stop(t) })
	// Everything the child writes on stdout is kept to check it is
	// protocol only.
	tee := struct {
		io.Reader
		io.Closer
	}{io.TeeReader(stdout, r.stdout), stdout}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mcpsdk.NewClient(&mcpsdk.Implementation{Name: "nomos-e2e", Version: "1"}, nil)
	r.cs, err = client.Connect(ctx, &mcpsdk.IOTransport{Reader: tee, Writer: stdin}, nil)
	if err != nil {
		t.Fatalf("connect: %v\nstderr:\n%s", err, r.stderr.String())
	}
	return r
}

// stop closes the session (stdin EOF) and waits for a clean exit.
func (r *stdioRun) stop(t *testing.T) {
	if r.cmd.ProcessState != nil {
		return
	}
	if r.cs != nil {
		_ = r.cs.Close()
	}
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("nomos mcp stdio exited with %v\nstderr:\n%s", err, r.stderr.String())
		}
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
		t.Errorf("nomos mcp stdio did not exit after stdin closed\nstderr:\n%s", r.stderr.String())
	}
}

func (r *stdioRun) call(t *testing.T, name string, args map[string]any) (string, bool, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := r.cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v\nstderr:\n%s", name, err, r.stderr.String())
	}
	var text strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcpsdk.TextContent); ok {
			text.WriteString(tc.Text)
		}
	}
	return text.String(), res.IsError, res.Meta
}

func TestMCPStdioEndToEnd(t *testing.T) {
	r := startStdio(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	list, err := r.cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	for _, want := range []string{"nomos_fs_read", "nomos_fs_write", "nomos_apply_patch", "nomos_exec", "nomos_http_request", "nomos_capabilities", "lookup_order", "refund_order"} {
		if !slices.Contains(names, want) {
			t.Errorf("tools/list lacks %s: %v", want, names)
		}
	}
	if slices.Contains(names, "issue_compensation") {
		t.Errorf("tools/list shows issue_compensation, which policy always denies: %v", names)
	}

	t.Run("fs_read", func(t *testing.T) {
		text, isErr, meta := r.call(t, "nomos_fs_read", map[string]any{"path": "./README.md"})
		if isErr || text != "# stdio workspace\n" {
			t.Fatalf("read inside the workspace: %q isError=%v", text, isErr)
		}
		id, _ := meta["nomos/action_id"].(string)
		assertEventTypes(t, r.auditDB(), id, "trace.start", "action.decision", "action.completed", "trace.end")
		text, isErr, _ = r.call(t, "nomos_fs_read", map[string]any{"path": ".env"})
		if !isErr || !strings.Contains(text, "Nomos decision: DENY (deny_by_rule)") || strings.Contains(text, "do-not-leak") {
			t.Fatalf(".env: %q isError=%v", text, isErr)
		}
		// A symlink to .env is decided on where it leads (issue 8 #2).
		if err := os.Symlink(".env", filepath.Join(r.dir, "ws", "notes.txt")); err != nil {
			t.Fatal(err)
		}
		text, isErr, _ = r.call(t, "nomos_fs_read", map[string]any{"path": "notes.txt"})
		if !isErr || !strings.Contains(text, "Nomos decision: DENY (deny_by_rule)") || strings.Contains(text, "do-not-leak") {
			t.Fatalf("symlink to .env: %q isError=%v", text, isErr)
		}
	})

	t.Run("exec", func(t *testing.T) {
		text, isErr, _ := r.call(t, "nomos_exec", map[string]any{"argv": []string{"rm", "-rf", "docs"}})
		if !isErr || !strings.Contains(text, "Nomos decision: DENY") {
			t.Fatalf("rm: %q isError=%v", text, isErr)
		}
		if _, err := os.Stat(filepath.Join(r.dir, "ws", "docs", "keep")); err != nil {
			t.Fatalf("a denied command ran: %v", err)
		}
		text, isErr, _ = r.call(t, "nomos_exec", map[string]any{"argv": []string{"echo", "hello"}})
		if isErr || !strings.Contains(text, "exit code: 0") || !strings.Contains(text, "hello") {
			t.Fatalf("echo: %q isError=%v", text, isErr)
		}
	})

	t.Run("builtin approval round trip", func(t *testing.T) {
		args := map[string]any{"path": "docs/notes.md", "content": "approved\n"}
		text, isErr, meta := r.call(t, "nomos_fs_write", args)
		id, _ := meta["nomos/approval_id"].(string)
		if !isErr || !strings.Contains(text, "REQUIRE_APPROVAL") || !strings.HasPrefix(id, "apr_") || !strings.Contains(text, id) {
			t.Fatalf("write under docs/: %q isError=%v meta=%v", text, isErr, meta)
		}
		r.approve(t, id)
		args["approval_id"] = id
		text, isErr, _ = r.call(t, "nomos_fs_write", args)
		data, _ := os.ReadFile(filepath.Join(r.dir, "ws", "docs", "notes.md"))
		if isErr || string(data) != "approved\n" {
			t.Fatalf("retry with approval_id: %q isError=%v, file %q", text, isErr, data)
		}
	})

	t.Run("upstream", func(t *testing.T) {
		text, isErr, _ := r.call(t, "lookup_order", map[string]any{"order_id": "1002"})
		if isErr || !strings.Contains(text, "order 1002") {
			t.Fatalf("lookup_order: %q isError=%v", text, isErr)
		}
		text, isErr, _ = r.call(t, "refund_order", map[string]any{"order_id": "1002", "amount": 250})
		if !isErr || !strings.Contains(text, "REQUIRE_APPROVAL") || !strings.Contains(text, "approval_id: apr_") {
			t.Fatalf("refund 250: %q isError=%v", text, isErr)
		}
		// Hidden by policy: the same answer as a tool that does not exist.
		_, err := r.cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: "issue_compensation", Arguments: map[string]any{"order_id": "1002", "value": 10}})
		if err == nil || !strings.Contains(err.Error(), "unknown tool: issue_compensation") {
			t.Fatalf("issue_compensation: %v", err)
		}
	})

	t.Run("capabilities", func(t *testing.T) {
		text, isErr, _ := r.call(t, "nomos_capabilities", map[string]any{})
		var caps map[string]any
		if isErr || json.Unmarshal([]byte(text), &caps) != nil {
			t.Fatalf("capabilities: %q", text)
		}
		id, _ := caps["identity"].(map[string]any)
		if id["principal"] != "alice" || id["agent"] != "claude-code" || caps["environment"] != "dev" || caps["policy_bundle_hash"] == "" {
			t.Fatalf("capabilities: %s", text)
		}
	})

	r.stop(t)
	r.assertProtocolOnly(t)
	r.assertAudit(t)
}

func (r *stdioRun) auditDB() string { return filepath.Join(r.dataDir, "caddy", "nomos", "audit.db") }

// approve decides an approval as a reviewer would, with the CLI on the
// same sqlite store.
func (r *stdioRun) approve(t *testing.T, id string) {
	t.Helper()
	store := filepath.Join(r.dataDir, "caddy", "nomos", "approvals.db")
	out, errOut, code := runCLI(t, r.dir, "approvals", "approve", id, "--path", store, "--approver", "reviewer")
	if code != 0 {
		t.Fatalf("approvals approve: %d %s %s", code, out, errOut)
	}
}

// assertProtocolOnly checks that every line the child wrote on stdout is
// a JSON-RPC 2.0 message, although an audit stdout sink is configured.
func (r *stdioRun) assertProtocolOnly(t *testing.T) {
	t.Helper()
	raw := r.stdout.String()
	if raw == "" {
		t.Fatal("nothing was read from stdout")
	}
	sc := bufio.NewScanner(strings.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var m struct {
			JSONRPC string `json:"jsonrpc"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m.JSONRPC != "2.0" {
			t.Fatalf("stdout carries a non-protocol line: %q", sc.Text())
		}
	}
	if !strings.Contains(r.stderr.String(), `"logger":"nomos.audit"`) {
		t.Errorf("the stdout audit sink did not write to stderr:\n%s", r.stderr.String())
	}
	if strings.Contains(raw, "do-not-leak") || strings.Contains(r.stderr.String(), "do-not-leak") {
		t.Error("the denied .env content leaked")
	}
}

// assertAudit checks the sqlite audit log: built-in actions and governed
// upstream calls, with the configured identity and the stdio transport.
func (r *stdioRun) assertAudit(t *testing.T) {
	t.Helper()
	db := openDB(t, r.auditDB())
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
			Agent      string         `json:"agent"`
			Meta       map[string]any `json:"executor_metadata"`
		}
		if err := json.Unmarshal([]byte(raw), &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Principal != "alice" || ev.Agent != "claude-code" {
			t.Errorf("decision recorded for %s/%s, want alice/claude-code", ev.Principal, ev.Agent)
		}
		if strings.HasPrefix(ev.ActionType, "mcp.") && ev.Meta["downstream_transport"] != "stdio" {
			t.Errorf("upstream call audited with transport %v", ev.Meta["downstream_transport"])
		}
		seen[ev.ActionType+" "+ev.Resource] += ev.Decision + " "
	}
	for key, want := range map[string]string{
		"fs.read file://workspace/README.md":       "ALLOW",
		"fs.read file://workspace/.env":            "DENY",
		"process.exec file://workspace/rm":         "DENY",
		"fs.write file://workspace/docs/notes.md":  "REQUIRE_APPROVAL",
		"mcp.call mcp://retail/refund_order":       "REQUIRE_APPROVAL",
		"mcp.call mcp://retail/issue_compensation": "DENY",
	} {
		if !strings.Contains(seen[key], want) {
			t.Errorf("audit: %s decided %q, want %s", key, seen[key], want)
		}
	}
	if !bytes.Contains([]byte(seen["fs.write file://workspace/docs/notes.md"]), []byte("ALLOW")) {
		t.Errorf("audit: the approved retry is not recorded as ALLOW: %q", seen["fs.write file://workspace/docs/notes.md"])
	}
}
