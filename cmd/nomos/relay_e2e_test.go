package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// relayCaddyfile puts the everything server behind nomos_mcp twice: as a
// stdio child (/stdio) and as a remote Streamable HTTP upstream (/http).
// The policy allows every MCP action except the one tool it hides.
const relayCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	nomos {
		policy default {
			bundle relay.yaml
		}
		identity {
			api_key {env.T_RELAY_KEY} tester
		}
		# pin warn: the everything server lists some tools only to clients
		# that declare sampling, elicitation or roots, which enforce would
		# hold for review as new tools (docs/mcp-gateway.md#tool-pinning);
		# this test is about the relay, pins_e2e_test.go about pinning.
		upstream ev_stdio {
			command {NODE} {EVERYTHING} stdio
			env_allowlist PATH
			pin warn
		}
		upstream ev_http {
			url http://127.0.0.1:{EVPORT}/mcp
			pin warn
		}
	}
}

http://127.0.0.1:{PORT} {
	handle /stdio {
		nomos_mcp ev_stdio
	}
	handle /http {
		nomos_mcp ev_http
	}
}
`

// relayPolicy allows the everything server's surfaces and hides one tool,
// gzip-file-as-resource, from everyone.
const relayPolicy = `version: v1
rules:
  - id: hide-gzip
    action_type: mcp.call
    resource: mcp://*/gzip-file-as-resource
    decision: DENY
  - id: everything
    action_type: "*"
    resource: "**"
    decision: ALLOW
`

// hiddenTool is the tool relayPolicy hides.
const hiddenTool = "gzip-file-as-resource"

// The documented differences between a client connected to the
// everything server directly and through nomos_mcp (docs/mcp-gateway.md,
// "What differs from a direct connection"). Every other field must be
// equal.
var relayDocumentedDifferences = map[string]string{
	// Names the policy hides are not listed.
	"tools": "the tools the policy hides are not listed",
	// A stdio child starts from an empty environment plus env_allowlist.
	"env": "environment isolation of stdio children (only over a stdio upstream)",
	// Unknown tools are protocol errors (-32602) at the gateway, as the MCP
	// specification asks; the everything server answers isError: true.
	"unknownTool": "an unknown tool is JSON-RPC -32602 at the gateway",
	// Through nomos, the hidden tool answers exactly as an unknown one.
	"hiddenTool": "a tool the policy hides answers as an unknown tool",
	// Not a difference: the everything server sends its last progress
	// notification without waiting, so a direct client sometimes sees it
	// after the result and drops it. Compared by checkProgress.
	"progress": "compared as a common prefix",
}

// TestRelayComparison runs the official TypeScript SDK client against
// @modelcontextprotocol/server-everything directly and through nomos_mcp,
// over a stdio and a Streamable HTTP upstream, and compares what it sees
// field by field: only the documented differences may show.
func TestRelayComparison(t *testing.T) {
	tools := needNodeTools(t)
	everything := filepath.Join(tools.nodeModules, "@modelcontextprotocol", "server-everything", "dist", "index.js")
	script := relayScript(t, tools)
	evPort := freePort(t)
	startEverythingNode(t, tools.node, everything, evPort)

	caddyfile := strings.NewReplacer("{NODE}", tools.node, "{EVERYTHING}", everything, "{EVPORT}", fmt.Sprint(evPort)).Replace(relayCaddyfile)
	s := startServer(t, caddyfile, map[string]string{"relay.yaml": relayPolicy}, "T_RELAY_KEY=relay-key")

	for _, tc := range []struct {
		name            string
		direct, gateway []string
	}{
		{name: "stdio", direct: []string{"stdio", tools.node, everything}, gateway: []string{"http", s.base + "/stdio", "relay-key"}},
		{name: "streamable_http", direct: []string{"http", fmt.Sprintf("http://127.0.0.1:%d/mcp", evPort)}, gateway: []string{"http", s.base + "/http", "relay-key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			direct := runRelayScript(t, tools.node, script, tc.direct, false)
			through := runRelayScript(t, tools.node, script, tc.gateway, false)
			compareRelay(t, tc.name, direct, through)
			// A client that declares URL-mode elicitation is offered the
			// upstream's URL-mode tool through nomos too.
			direct = runRelayScript(t, tools.node, script, tc.direct, true)
			through = runRelayScript(t, tools.node, script, tc.gateway, true)
			if !bytes.Contains(direct["tools"], []byte(`"trigger-url-elicitation"`)) {
				t.Fatalf("the everything server does not offer trigger-url-elicitation to a client that declares it: %s", clip(direct["tools"]))
			}
			checkToolsDiffer(t, direct["tools"], through["tools"], true)
		})
	}
}

// compareRelay compares every field and checks each documented difference
// is exactly the documented one.
func compareRelay(t *testing.T, transport string, direct, through map[string]json.RawMessage) {
	t.Helper()
	keys := make([]string, 0, len(direct))
	for k := range direct {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(direct) != len(through) {
		t.Errorf("field sets differ: direct %d, through nomos %d", len(direct), len(through))
	}
	for _, k := range keys {
		if _, documented := relayDocumentedDifferences[k]; documented {
			continue
		}
		if !jsonEqual(direct[k], through[k]) {
			t.Errorf("%s differs (undocumented):\n direct:  %s\n through: %s", k, clip(direct[k]), clip(through[k]))
		}
	}
	checkToolsDiffer(t, direct["tools"], through["tools"], false)
	checkProgress(t, direct["progress"], through["progress"])
	checkUnknownTool(t, direct["unknownTool"], through["unknownTool"])
	hidden := bytes.ReplaceAll(through["hiddenTool"], []byte(hiddenTool), []byte("no-such-tool"))
	if !jsonEqual(hidden, through["unknownTool"]) {
		t.Errorf("the hidden tool does not answer as an unknown one:\n hidden:  %s\n unknown: %s", through["hiddenTool"], through["unknownTool"])
	}
	if transport != "stdio" && !jsonEqual(direct["env"], through["env"]) {
		t.Errorf("env differs over a remote upstream (the same process answers both):\n direct:  %s\n through: %s", clip(direct["env"]), clip(through["env"]))
	}
	if transport == "stdio" && bytes.Contains(through["env"], []byte("XDG_DATA_HOME")) {
		t.Errorf("the stdio child inherited the gateway's environment: %s", clip(through["env"]))
	}
	var seen struct {
		Sampling    []any `json:"sampling"`
		Elicitation []any `json:"elicitation"`
		RootsAsked  bool  `json:"rootsAsked"`
		LogReceived bool  `json:"logReceived"`
	}
	_ = json.Unmarshal(through["seen"], &seen)
	if len(seen.Sampling) != 1 || len(seen.Elicitation) != 1 || !seen.RootsAsked || !seen.LogReceived {
		t.Errorf("the client through nomos did not answer sampling, elicitation and roots once each, or got no log message: %s", through["seen"])
	}
}

// checkToolsDiffer: through nomos the tools are the direct ones minus the
// hidden tool, definitions unchanged; and unless the client declared
// URL-mode elicitation, no trigger-url-elicitation shows.
func checkToolsDiffer(t *testing.T, direct, through json.RawMessage, urlDeclared bool) {
	t.Helper()
	var d, g []map[string]any
	if json.Unmarshal(direct, &d) != nil || json.Unmarshal(through, &g) != nil {
		t.Fatalf("tools are not lists: %s / %s", clip(direct), clip(through))
	}
	var want []map[string]any
	for _, tool := range d {
		if tool["name"] != hiddenTool {
			want = append(want, tool)
		}
	}
	if len(want) == len(d) {
		t.Fatalf("the direct client does not see %s; the hidden-name check cannot run", hiddenTool)
	}
	if !reflect.DeepEqual(want, g) {
		t.Errorf("tools through nomos are not the direct ones minus %s:\n want: %v\n got:  %v", hiddenTool, names(want), names(g))
	}
	for _, tool := range g {
		if tool["name"] == "trigger-url-elicitation" && !urlDeclared {
			t.Error("the upstream offered URL elicitation, which the client never declared")
		}
	}
}

// checkUnknownTool: the gateway answers an unknown tool with -32602, and
// the hidden tool exactly the same way.
func checkUnknownTool(t *testing.T, direct, through json.RawMessage) {
	t.Helper()
	var g struct {
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(through, &g) != nil || g.Error == nil || g.Error.Code != -32602 || !strings.Contains(g.Error.Message, "unknown tool: no-such-tool") {
		t.Errorf("unknown tool through nomos: %s, want -32602 unknown tool", clip(through))
	}
	if !bytes.Contains(direct, []byte(`"isError":true`)) {
		t.Errorf("the everything server's answer to an unknown tool changed (%s): update the documented difference", clip(direct))
	}
}

// checkProgress: both clients saw progress, and the notifications they
// both saw are equal.
func checkProgress(t *testing.T, direct, through json.RawMessage) {
	t.Helper()
	var d, g []map[string]any
	_ = json.Unmarshal(direct, &d)
	_ = json.Unmarshal(through, &g)
	n := min(len(d), len(g))
	if n == 0 || !reflect.DeepEqual(d[:n], g[:n]) {
		t.Errorf("progress differs:\n direct:  %s\n through: %s", direct, through)
	}
}

func names(tools []map[string]any) []string {
	out := make([]string, len(tools))
	for i, tool := range tools {
		out[i], _ = tool["name"].(string)
	}
	return out
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}

func clip(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "..."
	}
	return string(b)
}

// relayScript copies testdata/relaycompare.mjs next to a node_modules link
// to the packages scripts/mcp-tools.sh installed.
func relayScript(t *testing.T, tools nodeTools) string {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/relaycompare.mjs")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(dir, "relaycompare.mjs")
	if err := os.WriteFile(script, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(tools.nodeModules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	return script
}

func runRelayScript(t *testing.T, node, script string, args []string, urlElicitation bool) map[string]json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if urlElicitation {
		cmd.Env = append(cmd.Env, "RELAY_URL_ELICITATION=1")
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("relaycompare.mjs %v: %v\nstderr: %s", args, err, stderr.String())
	}
	var out map[string]json.RawMessage
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("relaycompare.mjs printed no JSON: %v\n%s", err, stdout.String())
	}
	return out
}

// startEverythingNode runs the Node everything server's Streamable HTTP
// transport on a loopback port.
func startEverythingNode(t *testing.T, node, everything string, port int) {
	t.Helper()
	cmd := exec.Command(node, everything, "streamableHttp")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), fmt.Sprintf("PORT=%d", port)}
	var logs lockedBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the everything server did not listen on %d: %s", port, logs.String())
}
