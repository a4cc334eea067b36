package mcp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// everythingBinary builds the Go SDK conformance everything-server once.
var everythingBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "nomos-everything-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "everything-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build everything-server: %v: %s", err, out)
	}
	return bin, nil
})

func needEverything(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("subprocess test skipped under -short")
	}
	bin, err := everythingBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// startEverythingHTTP runs the everything-server in stateful Streamable
// HTTP mode on a loopback port and returns its URL.
func startEverythingHTTP(t *testing.T, bin string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "-http", addr, "-stateless=false")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitTCP(t, addr)
	return "http://" + addr + "/"
}

func waitTCP(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never listened", addr)
}

// upstreamFor starts an upstream over the given transport.
func upstreamFor(t *testing.T, transport string, mutate func(*UpstreamConfig)) *Upstream {
	t.Helper()
	bin := needEverything(t)
	cfg := UpstreamConfig{Name: "everything", Command: bin}
	if transport != TransportStdio {
		cfg = UpstreamConfig{Name: "everything", Transport: transport, URL: startEverythingHTTP(t, bin)}
	}
	if mutate != nil {
		mutate(&cfg)
	}
	u, err := NewUpstream(cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := u.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	return u
}

// clientEvents collects what the SDK client receives.
type clientEvents struct {
	mu       sync.Mutex
	progress []float64
	logs     []string
	samples  int
	elicits  int
	updated  int
}

func (e *clientEvents) options() *sdk.ClientOptions {
	return &sdk.ClientOptions{
		CreateMessageHandler: func(context.Context, *sdk.CreateMessageRequest) (*sdk.CreateMessageResult, error) {
			e.mu.Lock()
			e.samples++
			e.mu.Unlock()
			return &sdk.CreateMessageResult{Model: "test-model", Role: "assistant", Content: &sdk.TextContent{Text: "sampled-by-client"}}, nil
		},
		ElicitationHandler: func(context.Context, *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			e.mu.Lock()
			e.elicits++
			e.mu.Unlock()
			return &sdk.ElicitResult{Action: "accept", Content: map[string]any{"username": "octocat"}}, nil
		},
		ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
			e.mu.Lock()
			e.progress = append(e.progress, r.Params.Progress)
			e.mu.Unlock()
		},
		ResourceUpdatedHandler: func(context.Context, *sdk.ResourceUpdatedNotificationRequest) {
			e.mu.Lock()
			e.updated++
			e.mu.Unlock()
		},
		LoggingMessageHandler: func(_ context.Context, r *sdk.LoggingMessageRequest) {
			e.mu.Lock()
			e.logs = append(e.logs, fmt.Sprint(r.Params.Data))
			e.mu.Unlock()
		},
	}
}

func connectClient(t *testing.T, url, principal, version string, ev *clientEvents) *sdk.ClientSession {
	t.Helper()
	if ev == nil {
		ev = &clientEvents{}
	}
	client := sdk.NewClient(&sdk.Implementation{Name: "nomos-test-client", Version: "1"}, ev.options())
	hc := &http.Client{Transport: principalTransport{principal: principal, next: http.DefaultTransport}}
	tr := &sdk.StreamableClientTransport{Endpoint: url, HTTPClient: hc, MaxRetries: -1}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cs, err := client.Connect(ctx, tr, &sdk.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func toolText(t *testing.T, res *sdk.CallToolResult) string {
	t.Helper()
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*sdk.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestRelayEverything drives the gateway with the Go SDK client against
// the Go SDK everything-server over both upstream transports and both
// supported protocol versions.
func TestRelayEverything(t *testing.T) {
	for _, transport := range []string{TransportStdio, TransportStreamableHTTP} {
		for _, version := range []string{"2025-06-18", "2025-11-25"} {
			t.Run(transport+"/"+version, func(t *testing.T) {
				t.Parallel()
				runRelaySuite(t, transport, version)
			})
		}
	}
}

func runRelaySuite(t *testing.T, transport, version string) {
	u := upstreamFor(t, transport, nil)
	gov := newTestGovernor()
	gov.hidden["test_audio_content"] = true
	gov.set("test_error_handling", AuthzResult{Decision: policy.Deny, Reason: "deny_by_rule"})
	// The app's redaction rules, as caddymodule passes them: here a word
	// the server's log messages carry stands for a secret.
	redact := func(s string) string { return strings.ReplaceAll(s, "execution", "[REDACTED]") }
	g, err := NewGateway(RouteConfig{Upstreams: []string{"everything"}}, map[string]*Upstream{"everything": u}, gov, headerAuth, quietLog(), WithRedactor(redact))
	if err != nil {
		t.Fatal(err)
	}
	srv := serveGateway(t, g)
	ev := &clientEvents{}
	cs := connectClient(t, srv.URL, "alice", version, ev)
	ctx := testCtx(t)

	if got := cs.InitializeResult().ProtocolVersion; got != version {
		t.Errorf("negotiated %q, want %q", got, version)
	}
	if got := cs.InitializeResult().ServerInfo.Name; got != "mcp-conformance-test-server" {
		t.Errorf("serverInfo.name = %q: the relay must be transparent", got)
	}
	t.Run("ping", func(t *testing.T) {
		if err := cs.Ping(ctx, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("tools/list filtered", func(t *testing.T) {
		res, err := cs.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, tool := range res.Tools {
			names[tool.Name] = true
		}
		if !names["test_simple_text"] || names["test_audio_content"] {
			t.Fatalf("tools/list = %v: want test_simple_text shown and test_audio_content hidden", names)
		}
		gov.mu.Lock()
		last := gov.listed[len(gov.listed)-1]
		gov.mu.Unlock()
		if len(last[1]) != 1 || last[1][0] != "everything/test_audio_content" || len(last[0]) != len(res.Tools) {
			t.Fatalf("tools_list audit = %v", last)
		}
	})
	t.Run("tools/call", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "test_simple_text"})
		if err != nil || res.IsError {
			t.Fatalf("call: %v %+v", err, res)
		}
		if got := toolText(t, res); got != "This is a simple text response for testing." {
			t.Fatalf("text = %q", got)
		}
		req := gov.lastRequest()
		if req.ActionType != action.TypeMCPCall || req.Resource != "mcp://everything/test_simple_text" {
			t.Fatalf("action = %s %s", req.ActionType, req.Resource)
		}
		if req.Metadata["downstream_session_id"] == "" || req.Metadata["downstream_transport"] != "streamable_http" {
			t.Fatalf("metadata = %v", req.Metadata)
		}
		if gov.lastOutcome().Classification != audit.ResultSuccess {
			t.Fatalf("outcome = %+v", gov.lastOutcome())
		}
	})
	t.Run("denied call is a readable tool error", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "test_error_handling"})
		if err != nil || !res.IsError {
			t.Fatalf("call: %v %+v", err, res)
		}
		if text := toolText(t, res); !strings.Contains(text, "DENY") || !strings.Contains(text, "deny_by_rule") {
			t.Fatalf("text = %q", text)
		}
	})
	t.Run("approval round trip strips approval_id", func(t *testing.T) {
		gov.set("json_schema_2020_12_tool", AuthzResult{Decision: policy.RequireApproval, Reason: "needs_human", ApprovalID: "apr_123"})
		args := map[string]any{"name": "n", "email": "a@b.c", "contactMethod": "email"}
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "json_schema_2020_12_tool", Arguments: args})
		if err != nil || !res.IsError || !strings.Contains(toolText(t, res), "apr_123") {
			t.Fatalf("first call: %v %q", err, toolText(t, res))
		}
		args["approval_id"] = "apr_123"
		res, err = cs.CallTool(ctx, &sdk.CallToolParams{Name: "json_schema_2020_12_tool", Arguments: args})
		if err != nil || res.IsError {
			t.Fatalf("retry: %v %q", err, toolText(t, res))
		}
		req := gov.lastRequest()
		if req.ApprovalID != "apr_123" || strings.Contains(string(req.Params), "approval_id") {
			t.Fatalf("governed request = %+v", req)
		}
	})
	t.Run("arguments validated before policy", func(t *testing.T) {
		before := gov.requestCount()
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "json_schema_2020_12_tool", Arguments: map[string]any{"name": 5}})
		if err != nil || !res.IsError || !strings.Contains(toolText(t, res), audit.ResultValidationError) {
			t.Fatalf("call: %v %+v", err, res)
		}
		if gov.requestCount() != before {
			t.Fatal("an invalid call reached the governor")
		}
	})
	t.Run("progress", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "test_tool_with_progress", Meta: sdk.Meta{"progressToken": "tok-1"}})
		if err != nil || res.IsError {
			t.Fatalf("call: %v %+v", err, res)
		}
		if got := toolText(t, res); got != "tok-1" {
			t.Fatalf("upstream saw progress token %q, want the client's", got)
		}
		eventually(t, "3 progress notifications", func() bool {
			ev.mu.Lock()
			defer ev.mu.Unlock()
			return len(ev.progress) == 3
		})
	})
	t.Run("logging", func(t *testing.T) {
		if err := cs.SetLoggingLevel(ctx, &sdk.SetLoggingLevelParams{Level: "debug"}); err != nil {
			t.Fatal(err)
		}
		// The call's own redact obligations apply to the messages it causes.
		gov.set("test_tool_with_logging", AuthzResult{Decision: policy.Allow, Reason: "allow_by_rule",
			Redact: func(s string) string { return strings.ReplaceAll(s, "completed", "[CALL-REDACTED]") }})
		if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "test_tool_with_logging"}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "3 log messages", func() bool {
			ev.mu.Lock()
			defer ev.mu.Unlock()
			return len(ev.logs) == 3
		})
		ev.mu.Lock()
		defer ev.mu.Unlock()
		if joined := strings.Join(ev.logs, "\n"); strings.Contains(joined, "execution") || !strings.Contains(joined, "[REDACTED]") ||
			strings.Contains(joined, "completed") || !strings.Contains(joined, "[CALL-REDACTED]") {
			t.Fatalf("log messages not redacted with the app's rules and the call's: %s", joined)
		}
	})
	t.Run("sampling", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "test_sampling", Arguments: map[string]any{"prompt": "hi"}})
		if err != nil || res.IsError {
			t.Fatalf("call: %v %q", err, toolText(t, res))
		}
		if got := toolText(t, res); got != "LLM response: sampled-by-client" {
			t.Fatalf("text = %q", got)
		}
	})
	t.Run("sampling denied", func(t *testing.T) {
		gov.set(action.TypeMCPSample, AuthzResult{Decision: policy.Deny, Reason: "deny_sampling"})
		defer gov.set(action.TypeMCPSample, AuthzResult{Decision: policy.Allow})
		ev.mu.Lock()
		before := ev.samples
		ev.mu.Unlock()
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "test_sampling", Arguments: map[string]any{"prompt": "hi"}})
		if err != nil || !res.IsError {
			t.Fatalf("call: %v %+v", err, res)
		}
		ev.mu.Lock()
		after := ev.samples
		ev.mu.Unlock()
		if after != before {
			t.Fatal("a denied sampling request reached the client")
		}
	})
	t.Run("elicitation", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "test_elicitation", Arguments: map[string]any{"message": "name?"}})
		if err != nil || res.IsError {
			t.Fatalf("call: %v %q", err, toolText(t, res))
		}
		if got := toolText(t, res); !strings.Contains(got, "action=accept") || !strings.Contains(got, "octocat") {
			t.Fatalf("text = %q", got)
		}
	})
	t.Run("resources", func(t *testing.T) {
		list, err := cs.ListResources(ctx, nil)
		if err != nil || len(list.Resources) == 0 {
			t.Fatalf("list: %v %+v", err, list)
		}
		res, err := cs.ReadResource(ctx, &sdk.ReadResourceParams{URI: "test://static-text"})
		if err != nil || len(res.Contents) != 1 {
			t.Fatalf("read: %v %+v", err, res)
		}
		if req := gov.lastRequest(); req.ActionType != action.TypeMCPResourceRead || req.Resource != "mcp://everything/resource/test://static-text" {
			t.Fatalf("governed as %s %s", req.ActionType, req.Resource)
		}
		if _, err := cs.ListResourceTemplates(ctx, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("subscribe", func(t *testing.T) {
		if err := cs.Subscribe(ctx, &sdk.SubscribeParams{URI: "test://watched-resource"}); err != nil {
			t.Fatal(err)
		}
		eventually(t, "a resources/updated notification", func() bool {
			ev.mu.Lock()
			defer ev.mu.Unlock()
			return ev.updated > 0
		})
		if err := cs.Unsubscribe(ctx, &sdk.UnsubscribeParams{URI: "test://watched-resource"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("prompts", func(t *testing.T) {
		list, err := cs.ListPrompts(ctx, nil)
		if err != nil || len(list.Prompts) == 0 {
			t.Fatalf("list: %v", err)
		}
		res, err := cs.GetPrompt(ctx, &sdk.GetPromptParams{Name: "test_prompt_with_arguments", Arguments: map[string]string{"arg1": "a", "arg2": "b"}})
		if err != nil || len(res.Messages) == 0 {
			t.Fatalf("get: %v", err)
		}
		if req := gov.lastRequest(); req.ActionType != action.TypeMCPPromptGet {
			t.Fatalf("governed as %s", req.ActionType)
		}
	})
	t.Run("prompt denied is a JSON-RPC error", func(t *testing.T) {
		gov.set(action.TypeMCPPromptGet, AuthzResult{Decision: policy.Deny, Reason: "deny_prompts"})
		_, err := cs.GetPrompt(ctx, &sdk.GetPromptParams{Name: "test_simple_prompt"})
		if err == nil || !strings.Contains(err.Error(), "deny_prompts") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("completion", func(t *testing.T) {
		_, err := cs.Complete(ctx, &sdk.CompleteParams{Ref: &sdk.CompleteReference{Type: "ref/prompt", Name: "test_prompt_with_arguments"},
			Argument: sdk.CompleteParamsArgument{Name: "arg1", Value: "a"}})
		if err != nil {
			t.Fatal(err)
		}
		if req := gov.lastRequest(); req.ActionType != action.TypeMCPCompletion {
			t.Fatalf("governed as %s", req.ActionType)
		}
	})
}
