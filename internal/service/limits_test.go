package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/loopguard"
	"github.com/caddy-nomos/nomos/internal/ratelimit"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// TestRateLimitDeniesBeforePolicy: over a bucket an action is a DENY with
// RATE_LIMIT_EXCEEDED, retry-after information, audit evidence (rule id,
// bucket key, remaining tokens) and a retryable completion; nothing runs,
// and other principals keep their own buckets.
func TestRateLimitDeniesBeforePolicy(t *testing.T) {
	f := newFixture(t, false)
	l, err := ratelimit.NewRules(ratelimit.RulesConfig{Rules: []ratelimit.Rule{
		{ID: "reads", Scope: ratelimit.ScopePrincipalAction, ActionType: "fs.read", Burst: 2, RefillPerMinute: 2},
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.svc.cfg.RateLimits = l
	var seen []string
	f.svc.cfg.ObserveRateLimit = func(result, rule, scope string) { seen = append(seen, result+"/"+rule+"/"+scope) }
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if resp, _ := f.svc.Process(ctx, body(fmt.Sprint("rl", i), "fs.read", "file://workspace/a", nil, ""), alice); resp.Decision != policy.Allow {
			t.Fatalf("within the limit: %+v", resp)
		}
	}
	f.now = f.now.Add(10 * time.Second)
	resp, _ := f.svc.Process(ctx, body("rl-over", "fs.read", "file://workspace/a", nil, ""), alice)
	if resp.Decision != policy.Deny || !strings.HasPrefix(resp.Reason, "RATE_LIMIT_EXCEEDED: retry after 20s") ||
		resp.RetryAfterSeconds != 20 || resp.Limit == nil || resp.Limit.RuleID != "reads" || *resp.Limit.Remaining != 0 {
		t.Fatalf("over the limit: %+v", resp)
	}
	dec := f.rec.last(audit.EventActionDecision)
	m := dec.ExecutorMetadata
	if m["rate_limit_rule_id"] != "reads" || m["rate_limit_scope"] != "principal_action" || m["rate_limit_remaining_tokens"] != int64(0) ||
		m["rate_limit_bucket_key"] != "principal_action|reads|5:alice|7:fs.read" || m["retry_after_seconds"] != int64(20) ||
		len(dec.MatchedRuleIDs) != 0 {
		t.Fatalf("decision audit: %+v", dec)
	}
	if ev := f.rec.last(audit.EventActionCompleted); ev.ResultClassification != audit.ResultRateLimitExceeded || !ev.Retryable {
		t.Fatalf("completion audit: %+v", ev)
	}
	if len(f.exec.calls) != 2 {
		t.Fatalf("executed %d times", len(f.exec.calls))
	}
	bob := action.Identity{Principal: "bob", Agent: "bot"}
	if resp, _ := f.svc.Process(ctx, body("rl-bob", "fs.read", "file://workspace/a", nil, ""), bob); resp.Decision != policy.Allow {
		t.Fatalf("another principal was limited: %+v", resp)
	}
	if want := "allowed/reads/principal_action allowed/reads/principal_action exceeded/reads/principal_action allowed/reads/principal_action"; strings.Join(seen, " ") != want {
		t.Fatalf("observed %v", seen)
	}
}

// TestRateLimitNeverAllowsADeny: a limit runs before policy but only
// denies; an action policy denies stays denied with the bucket open.
func TestRateLimitNeverAllowsADeny(t *testing.T) {
	f := newFixture(t, false)
	l, _ := ratelimit.NewRules(ratelimit.RulesConfig{Rules: []ratelimit.Rule{{ID: "any", Scope: ratelimit.ScopeGlobalTool, ActionType: "*", Burst: 5, RefillPerMinute: 5}}})
	f.svc.cfg.RateLimits = l
	resp, _ := f.svc.Process(context.Background(), body("d1", "payments.compensate", "payments://shop/1", nil, ""), alice)
	if resp.Decision != policy.Deny || resp.Reason != "deny_by_rule" {
		t.Fatalf("%+v", resp)
	}
}

// TestLoopBreakerInMCPSession: identical calls in one MCP session trip the
// breaker; the denial says how long to wait and what budget is left, is
// audited with the session, and counts in the decisions metric as the MCP
// front door.
func TestLoopBreakerInMCPSession(t *testing.T) {
	f := newFixture(t, false)
	g, err := loopguard.New(loopguard.Config{Window: time.Minute, Session: loopguard.Limits{IdenticalCalls: 2, Calls: 10}})
	if err != nil {
		t.Fatal(err)
	}
	f.svc.cfg.LoopGuard = g
	var obs []Observation
	f.svc.cfg.Observe = func(o Observation) { obs = append(obs, o) }
	var trips []string
	f.svc.cfg.ObserveLoopBreaker = func(scope, limit string) { trips = append(trips, scope+"/"+limit) }
	meta := map[string]any{"downstream_transport": "streamable_http", "downstream_session_id": "sess-1"}
	call := func(id string) *Response {
		env := &action.Envelope{SchemaVersion: "v1", ActionID: id, TraceID: "mcp-sess-1", ActionType: "mcp.call",
			Resource: "mcp://retail/list_orders", Params: json.RawMessage(`{"tool_arguments":{"page":1}}`)}
		auth, err := f.svc.Authorize(context.Background(), env, alice, meta)
		if err != nil {
			t.Fatal(err)
		}
		// As the gateway does: a refusal is completed with its own class.
		if auth.Response.Decision != policy.Allow {
			f.svc.Complete(context.Background(), auth, "", nil)
		}
		return auth.Response
	}
	call("c1")
	call("c2")
	f.now = f.now.Add(15 * time.Second)
	resp := call("c3")
	if resp.Decision != policy.Deny || !strings.HasPrefix(resp.Reason, "LOOP_BREAKER_TRIPPED: the session reached its limit of 2 identical calls per window; wait 45s") ||
		!strings.Contains(resp.Reason, "remaining budget: calls 8, identical_calls 0") || resp.RetryAfterSeconds != 45 {
		t.Fatalf("tripped: %+v", resp)
	}
	dec := f.rec.last(audit.EventActionDecision)
	if dec.ExecutorMetadata["loop_breaker_limit"] != "identical_calls" || dec.ExecutorMetadata["downstream_session_id"] != "sess-1" ||
		dec.ExecutorMetadata["loop_breaker_scope"] != "session" {
		t.Fatalf("audit: %+v", dec.ExecutorMetadata)
	}
	last := obs[len(obs)-1]
	if last.FrontDoor != FrontDoorMCPHTTP || last.Decision != policy.Deny || !strings.HasPrefix(last.Reason, ReasonLoopBreakerTripped) {
		t.Fatalf("observation %+v", last)
	}
	if len(trips) != 1 || trips[0] != "session/identical_calls" {
		t.Fatalf("trips %v", trips)
	}
	meta["downstream_session_id"] = "sess-2"
	if resp := call("c4"); strings.HasPrefix(resp.Reason, ReasonLoopBreakerTripped) {
		t.Fatalf("another session was tripped: %+v", resp)
	}
}

// TestFrontDoorFromContext: Process reports the door its caller named.
func TestFrontDoorFromContext(t *testing.T) {
	f := newFixture(t, false)
	var doors []string
	f.svc.cfg.Observe = func(o Observation) { doors = append(doors, o.FrontDoor) }
	f.svc.Process(context.Background(), body("fd1", "fs.read", "file://workspace/a", nil, ""), alice)
	f.svc.Process(WithFrontDoor(context.Background(), FrontDoorMCPStdio), body("fd2", "fs.read", "file://workspace/a", nil, ""), alice)
	f.svc.Process(WithFrontDoor(context.Background(), FrontDoorGuard), []byte(`{`), alice)
	if strings.Join(doors, ",") != "http_api,mcp_stdio,guard" {
		t.Fatalf("doors %v", doors)
	}
}

// Authorize and Reject count a decision under the same door as Process:
// the one the caller named (nomos_guard names itself, in both modes),
// else the transport's.
func TestFrontDoorOfAuthorizeAndReject(t *testing.T) {
	f := newFixture(t, false)
	var doors []string
	f.svc.cfg.Observe = func(o Observation) { doors = append(doors, o.FrontDoor) }
	env := func(id string) *action.Envelope {
		return &action.Envelope{SchemaVersion: "v1", ActionID: id, TraceID: id, ActionType: "fs.read", Resource: "file://workspace/a", Params: json.RawMessage(`{}`)}
	}
	guard := WithFrontDoor(context.Background(), FrontDoorGuard)
	mcpMeta := map[string]any{"downstream_transport": "streamable_http"}
	authorize := func(ctx context.Context, id string, meta map[string]any) {
		auth, err := f.svc.Authorize(ctx, env(id), alice, meta)
		if err != nil {
			t.Fatal(err)
		}
		f.svc.Complete(ctx, auth, "", nil)
	}
	authorize(guard, "a1", map[string]any{"guard": "g"})
	authorize(guard, "a2", mcpMeta)
	authorize(context.Background(), "a3", mcpMeta)
	f.svc.Reject(guard, env("a4"), alice, mcpMeta, audit.ResultValidationError, "unknown tool")
	if _, err := f.svc.ProcessWith(context.Background(), []byte(`{`), alice, map[string]any{"downstream_transport": "stdio"}); err == nil {
		t.Fatal("a bad body was processed")
	}
	if got := strings.Join(doors, ","); got != "guard,guard,mcp_http,guard,mcp_stdio" {
		t.Fatalf("doors %s", got)
	}
}
