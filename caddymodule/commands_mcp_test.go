package caddymodule

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const stdioTestBundle = `version: v1
rules:
  - id: read-workspace
    action_type: fs.read
    resource: file://workspace/**
    decision: ALLOW
  - id: deny-dotenv
    action_type: "*"
    resource: file://workspace/**/.env
    decision: DENY
`

// stdioFixture writes a workspace, a bundle and a config into a temp dir
// and makes it the data dir too.
func stdioFixture(t *testing.T, name, config string) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	files := map[string]string{
		"ws/README.md": "hello\n", "ws/.env": "TOKEN=x\n", "bundle.yaml": stdioTestBundle,
		name: strings.ReplaceAll(config, "{DIR}", dir),
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, name)
}

const stdioTestCaddyfile = `{
	nomos {
		policy default {
			bundle {DIR}/bundle.yaml
		}
		audit {
			sink sqlite {DIR}/audit.db
		}
		executor {
			workspace_root {DIR}/ws
		}
	}
}
`

const stdioTestJSON = `{"apps":{"nomos":{
	"policies":{"default":{"bundles":[{"path":"{DIR}/bundle.yaml"}]}},
	"audit":{"sinks":[{"type":"sqlite","path":"{DIR}/audit.db"}]},
	"executor":{"workspace_root":"{DIR}/ws"}}}}`

// exchange serves one stdio session over pipes and returns the answers by
// id; stdin closes after the last message.
func exchange(t *testing.T, o stdioOptions, msgs ...string) map[float64]map[string]any {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- serveMCPStdio(context.Background(), o, inR, outW); _ = outW.Close() }()
	go func() {
		for _, m := range msgs {
			_, _ = io.WriteString(inW, m+"\n")
		}
		_ = inW.Close()
	}()
	answers := map[float64]map[string]any{}
	sc := bufio.NewScanner(outR)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("stdout is not protocol-pure: %q", sc.Text())
		}
		id, _ := m["id"].(float64)
		answers[id] = m
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after stdin closed")
	}
	return answers
}

func toolText(t *testing.T, m map[string]any) (string, bool) {
	t.Helper()
	r, ok := m["result"].(map[string]any)
	if !ok {
		t.Fatalf("no result: %v", m)
	}
	isErr, _ := r["isError"].(bool)
	return r["content"].([]any)[0].(map[string]any)["text"].(string), isErr
}

func TestMCPStdioServesTheAppInProcess(t *testing.T) {
	for _, c := range []struct{ name, file, config string }{
		{"caddyfile", "Caddyfile", stdioTestCaddyfile},
		{"json", "nomos.json", stdioTestJSON},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := stdioFixture(t, c.file, c.config)
			o := stdioOptions{config: path, policy: "default", principal: "local", agent: "mcp-stdio"}
			answers := exchange(t, o,
				`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`,
				`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
				`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nomos_fs_read","arguments":{"path":"README.md"}}}`,
				`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nomos_fs_read","arguments":{"path":"sub/../.env"}}}`,
				`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"nomos_fs_read","arguments":{"path":".env"}}}`,
				`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"nomos_capabilities","arguments":{}}}`,
			)
			if v := answers[1]["result"].(map[string]any)["protocolVersion"]; v != "2025-11-25" {
				t.Fatalf("initialize: %v", answers[1])
			}
			if n := len(answers[2]["result"].(map[string]any)["tools"].([]any)); n != 6 {
				t.Fatalf("tools/list: %d tools, want the 6 built-ins", n)
			}
			if text, isErr := toolText(t, answers[3]); isErr || text != "hello\n" {
				t.Fatalf("read README.md: %q %v", text, isErr)
			}
			if text, isErr := toolText(t, answers[4]); !isErr || !strings.Contains(text, "Nothing was done") {
				t.Fatalf("traversal: %q %v", text, isErr)
			}
			if text, isErr := toolText(t, answers[5]); !isErr || !strings.Contains(text, "DENY (deny_by_rule)") || strings.Contains(text, "TOKEN") {
				t.Fatalf("read .env: %q %v", text, isErr)
			}
			text, _ := toolText(t, answers[6])
			for _, want := range []string{`"principal": "local"`, `"agent": "mcp-stdio"`, `"environment": "dev"`, `"assurance_level": "BEST_EFFORT"`, `"workspace_root"`} {
				if !strings.Contains(text, want) {
					t.Fatalf("capabilities lack %s:\n%s", want, text)
				}
			}
		})
	}
}

func TestMCPStdioRefusals(t *testing.T) {
	noApp := stdioFixture(t, "Caddyfile", "http://127.0.0.1:9 {\n\trespond ok\n}\n")
	withApp := stdioFixture(t, "Caddyfile", stdioTestCaddyfile)
	cases := []struct {
		name string
		o    stdioOptions
		want string
	}{
		{"no nomos app", stdioOptions{config: noApp, policy: "default", principal: "p"}, "has no nomos app"},
		{"unknown policy", stdioOptions{config: withApp, policy: "nope", principal: "p"}, `unknown policy set "nope"`},
		{"unknown upstream", stdioOptions{config: withApp, policy: "default", principal: "p", upstreams: []string{"shop"}}, `unknown upstream "shop"`},
		{"missing file", stdioOptions{config: withApp + ".missing", policy: "default", principal: "p"}, "reading config"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := serveMCPStdio(context.Background(), c.o, strings.NewReader(""), io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "CONFIG_ERROR: ") {
				t.Fatalf("error not in the CLI form: %v", err)
			}
		})
	}
}

func TestMCPStdioFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--config is required"},
		{[]string{"--config", "-"}, "stdin carries the MCP protocol"},
		{[]string{"--config", "x", "--principal", ""}, "--principal must not be empty"},
	} {
		cmd := newStdioCommand()
		if err := cmd.ParseFlags(c.args); err != nil {
			t.Fatal(err)
		}
		if _, err := stdioFlags(cmd); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
	cmd := newStdioCommand()
	_ = cmd.ParseFlags([]string{"--config", "C", "--upstream", "a", "--upstream", "b"})
	o, err := stdioFlags(cmd)
	if err != nil || fmt.Sprint(o) != "{C  default local mcp-stdio [a b]}" {
		t.Fatalf("defaults: %+v %v", o, err)
	}
}
