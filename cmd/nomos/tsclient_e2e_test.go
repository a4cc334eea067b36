package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// retailViewerBundle narrows the retail policy for a second principal:
// viewer may look orders up but never refund, so its tools/list must not
// show refund_order.
const retailViewerBundle = `version: v1
rules:
  - id: viewer-no-refunds
    principals: [viewer]
    action_type: mcp.call
    resource: mcp://retail/refund_order
    decision: DENY
`

// tsClientCaddyfile serves the retail demo server through nomos_mcp at /mcp
// and the HTTP API (approvals, health) on every other path of the same site.
const tsClientCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	nomos {
		policy default {
			bundle retail.yaml
			bundle retail-viewer.yaml
		}
		identity {
			api_key {env.T_SUPPORT_KEY} support
			api_key {env.T_VIEWER_KEY} viewer
			api_key {env.T_REVIEWER_KEY} reviewer
		}
		audit {
			sink stdout
		}
		approvals {
			ttl 15m
			approvers reviewer
		}
		upstream retail {
			command {env.T_RETAIL_CMD}
		}
	}
}

http://127.0.0.1:{PORT} {
	handle /mcp {
		nomos_mcp {
			upstreams retail
		}
	}
	handle {
		nomos_api
	}
}
`

// tsClient runs examples/clients/ts/client.mjs, the official TypeScript SDK
// client, with Node 22.
type tsClient struct {
	node, script, url string
}

// clientOutput is what client.mjs prints.
type clientOutput struct {
	Server struct {
		Name string `json:"name"`
	} `json:"server"`
	Tools []string `json:"tools"`
	Call  *struct {
		Result struct {
			Content []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"content"`
			IsError bool `json:"isError"`
		} `json:"result"`
	} `json:"call"`
}

// text joins the text blocks of the call's result.
func (o clientOutput) text() string {
	var parts []string
	for _, c := range o.Call.Result.Content {
		if c.Type == "text" {
			parts = append(parts, c.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// newTSClient copies the example client next to a node_modules link to the
// SDK that scripts/mcp-tools.sh installed (ESM resolves packages from the
// script's own directory), so the example runs as committed.
func newTSClient(t *testing.T, tools nodeTools, url string) tsClient {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"client.mjs", "package.json"} {
		data, err := os.ReadFile(filepath.Join("../../examples/clients/ts", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(tools.nodeModules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	return tsClient{node: tools.node, script: filepath.Join(dir, "client.mjs"), url: url}
}

// run connects with the bearer key, lists the tools and, when tool is set,
// calls it with args.
func (c tsClient) run(t *testing.T, key, tool string, args map[string]any) clientOutput {
	t.Helper()
	stdout, stderr, err := c.exec(key, tool, args)
	if err != nil {
		t.Fatalf("client.mjs %s: %v\nstderr: %s\nstdout: %s", tool, err, stderr, stdout)
	}
	var out clientOutput
	if err := json.Unmarshal(stdout, &out); err != nil {
		t.Fatalf("client.mjs printed no JSON: %v\n%s", err, stdout)
	}
	if tool != "" && out.Call == nil {
		t.Fatalf("client.mjs did not report the call: %s", stdout)
	}
	return out
}

// fails runs a call that must end in a JSON-RPC error and returns what
// the client printed about it.
func (c tsClient) fails(t *testing.T, key, tool string, args map[string]any) string {
	t.Helper()
	stdout, stderr, err := c.exec(key, tool, args)
	if err == nil {
		t.Fatalf("client.mjs %s succeeded, want an error: %s", tool, stdout)
	}
	return string(stderr)
}

func (c tsClient) exec(key, tool string, args map[string]any) ([]byte, []byte, error) {
	argv := []string{c.script, "--url", c.url}
	if tool != "" {
		raw, _ := json.Marshal(args)
		argv = append(argv, "--call", tool, "--arguments", string(raw))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.node, argv...)
	cmd.Env = append(os.Environ(), "NOMOS_MCP_TOKEN="+key)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.Bytes(), stderr.Bytes(), err
}

var approvalIDText = regexp.MustCompile(`approval_id: (apr_[A-Za-z0-9_-]+)`)

// TestTSClientThroughGateway drives the retail demo server through
// nomos_mcp with the official TypeScript SDK client: tools/list filtered per
// principal, a policy denial the model can read, and the approval round
// trip (REQUIRE_APPROVAL, a reviewer approves over the HTTP API, the retry
// with approval_id runs the refund on the server).
func TestTSClientThroughGateway(t *testing.T) {
	tools := needNodeTools(t)
	retail := goBuild(t, "github.com/caddy-nomos/nomos/examples/retail/retail-mcp")
	policy, err := os.ReadFile("../../examples/policies/retail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, tsClientCaddyfile,
		map[string]string{"retail.yaml": string(policy), "retail-viewer.yaml": retailViewerBundle},
		"T_SUPPORT_KEY=support-key", "T_VIEWER_KEY=viewer-key", "T_REVIEWER_KEY=reviewer-key", "T_RETAIL_CMD="+retail)
	c := newTSClient(t, tools, s.base+"/mcp")
	lookup := func(t *testing.T) string {
		t.Helper()
		out := c.run(t, "support-key", "lookup_order", map[string]any{"order_id": "1002"})
		if out.Call.Result.IsError {
			t.Fatalf("lookup_order: %s", out.text())
		}
		return out.text()
	}

	t.Run("tools/list per principal", func(t *testing.T) {
		support := c.run(t, "support-key", "", nil)
		if support.Server.Name != "retail" {
			t.Errorf("initialize is not the upstream's own: server %q", support.Server.Name)
		}
		// issue_compensation is denied to everyone, refund_order to viewer.
		if want := []string{"lookup_order", "refund_order"}; !slices.Equal(sorted(support.Tools), want) {
			t.Errorf("support sees %v, want %v", support.Tools, want)
		}
		if viewer := c.run(t, "viewer-key", "", nil); !slices.Equal(viewer.Tools, []string{"lookup_order"}) {
			t.Errorf("viewer sees %v, want [lookup_order]", viewer.Tools)
		}
	})

	t.Run("policy denial", func(t *testing.T) {
		// issue_compensation is denied to everyone, so it is hidden: the
		// call answers as for a tool that does not exist.
		if msg := c.fails(t, "support-key", "issue_compensation", map[string]any{"order_id": "1001", "value": 20}); !strings.Contains(msg, "unknown tool: issue_compensation") {
			t.Errorf("issue_compensation: %q", msg)
		}
		// A tool policy hides from the viewer does not exist for it: the
		// answer is the unknown-tool error, not a denial naming a rule.
		if msg := c.fails(t, "viewer-key", "refund_order", map[string]any{"order_id": "1002", "amount": 5}); !strings.Contains(msg, "unknown tool: refund_order") {
			t.Errorf("viewer refund_order: %q", msg)
		}
		if got := lookup(t); !strings.Contains(got, "refunded 0.00") {
			t.Errorf("a denied refund reached the server: %s", got)
		}
	})

	t.Run("approval round trip", func(t *testing.T) {
		refund := map[string]any{"order_id": "1002", "amount": 250}
		first := c.run(t, "support-key", "refund_order", refund)
		m := approvalIDText.FindStringSubmatch(first.text())
		if !first.Call.Result.IsError || !strings.Contains(first.text(), "Nomos decision: REQUIRE_APPROVAL") || m == nil ||
			!strings.Contains(first.text(), "approval_id") {
			t.Fatalf("refund 250: isError=%v %q", first.Call.Result.IsError, first.text())
		}
		id := m[1]
		withID := map[string]any{"order_id": "1002", "amount": 250, "approval_id": id}
		if early := c.run(t, "support-key", "refund_order", withID); !early.Call.Result.IsError ||
			!strings.Contains(early.text(), "REQUIRE_APPROVAL") {
			t.Fatalf("retry before approval: isError=%v %q", early.Call.Result.IsError, early.text())
		}
		if got := lookup(t); !strings.Contains(got, "refunded 0.00") {
			t.Fatalf("refund ran before approval: %s", got)
		}

		code, resp := client{base: s.base, apiKey: "reviewer-key"}.post(t, "/approvals/decide", map[string]any{"approval_id": id, "decision": "APPROVE"})
		if code != 200 || resp["status"] != "APPROVED" {
			t.Fatalf("approve: %d %v", code, resp)
		}

		done := c.run(t, "support-key", "refund_order", withID)
		if done.Call.Result.IsError || !strings.Contains(done.text(), "refunded 250.00 on order 1002") {
			t.Fatalf("retry after approval: isError=%v %q", done.Call.Result.IsError, done.text())
		}
		if got := lookup(t); !strings.Contains(got, "refunded 250.00") {
			t.Errorf("the server does not show the refund: %s", got)
		}
		if !slices.ContainsFunc(auditDecisions(s.logs.String()), func(d auditDecision) bool {
			return d.ActionType == "mcp.call" && d.Resource == "mcp://retail/refund_order" && d.Decision == "ALLOW" && d.Reason == "allow_by_approval"
		}) {
			t.Errorf("no ALLOW allow_by_approval decision audited for refund_order")
		}
	})
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
