package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const opsBundle = `version: v1
rules:
  - id: allow-orders-read
    action_type: orders.read
    resource: "shop://orders/**"
    decision: ALLOW
  - id: allow-orders-list
    action_type: orders.list
    resource: "shop://orders/**"
    decision: ALLOW
  - id: refund-needs-approval
    action_type: payments.refund
    resource: "payments://shop/**"
    decision: REQUIRE_APPROVAL
  - id: allow-ops-tools
    action_type: mcp.call
    resource: "mcp://ops/*"
    decision: ALLOW
`

// opsCaddyfile puts nomos_api and nomos_mcp on one site with rate limits
// and loop breakers, an upstream fixture whose hold tool stays in flight
// until released, and a bounded grace period. {RUNTIME} adds runtime
// options.
const opsCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	grace_period 5s
	nomos {
		policy default {
			bundle ops.yaml
		}
		identity {
			api_key {env.T_ALICE_KEY} alice
			api_key {env.T_BOB_KEY} bob
			api_key {env.T_REVIEWER_KEY} reviewer
			agent_secret shop-agent {env.T_AGENT_SECRET}
		}
		audit {
			sink sqlite
		}
		approvals {
			approvers reviewer
		}
		runtime {
			rate_limits {
				principal_action orders {
					action_type orders.read
					burst 3
					refill_per_minute 1
				}
				global_tool ops-update {
					action_type mcp.call
					resource mcp://ops/update
					burst 2
					refill_per_minute 1
				}
			}
			loop_breakers {
				session {
					max_identical_calls 3
				}
				agent {
					max_calls 1000
				}
			}
{RUNTIME}
		}
		upstream ops {
			command ./bin/opsmcp
		}
	}
}

http://127.0.0.1:{PORT} {
	handle /mcp* {
		nomos_mcp ops
	}
	handle {
		nomos_api
	}
}
`

var opsEnv = []string{"T_ALICE_KEY=alice-key", "T_BOB_KEY=bob-key", "T_REVIEWER_KEY=reviewer-key", "T_AGENT_SECRET=agent-secret"}

func startOps(t *testing.T, runtime string) (*server, client) {
	t.Helper()
	fixture, err := os.ReadFile(goBuild(t, "./testdata/opsmcp"))
	if err != nil {
		t.Fatal(err)
	}
	cf := strings.Replace(opsCaddyfile, "{RUNTIME}", runtime, 1)
	s := startServer(t, cf, map[string]string{"ops.yaml": opsBundle, "bin/opsmcp": string(fixture)}, opsEnv...)
	return s, client{base: s.base, apiKey: "alice-key", agent: "shop-agent", secret: "agent-secret"}
}

// scrape reads Caddy's admin /metrics as "name{labels}" -> value; labels
// are in the exposition's own (sorted) order.
func scrape(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// wantMetrics checks metric values; a negative want means "at least -want".
func wantMetrics(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		v, ok := got[k]
		switch {
		case !ok:
			t.Errorf("metric %s missing", k)
		case w >= 0 && v != w:
			t.Errorf("metric %s = %v, want %v", k, v, w)
		case w < 0 && v < -w:
			t.Errorf("metric %s = %v, want at least %v", k, v, -w)
		}
	}
	if t.Failed() {
		var nomos []string
		for k, v := range got {
			if strings.HasPrefix(k, "nomos_") {
				nomos = append(nomos, fmt.Sprintf("%s %v", k, v))
			}
		}
		t.Logf("nomos metrics:\n%s", strings.Join(nomos, "\n"))
	}
}

// auditJSON returns the JSON of the one event of a type for an action.
func auditJSON(t *testing.T, db string, actionID, typ, path string) string {
	t.Helper()
	d := openDB(t, db)
	defer d.Close()
	var v any
	if err := d.QueryRow(`SELECT json_extract(json, ?) FROM audit_events WHERE event_type = ? AND action_id = ?`, path, typ, actionID).Scan(&v); err != nil {
		t.Fatalf("%s %s %s: %v", actionID, typ, path, err)
	}
	return fmt.Sprint(v)
}

// TestRateLimitsEndToEnd: the rate_limits buckets deny with
// RATE_LIMIT_EXCEEDED, retry information and audit evidence on the HTTP API
// and as a tool result on nomos_mcp; other principals keep their buckets;
// and every outcome is in Caddy's /metrics.
func TestRateLimitsEndToEnd(t *testing.T) {
	s, alice := startOps(t, "")
	before := scrape(t, s.admin)
	for i := 0; i < 3; i++ {
		if code, resp := alice.post(t, "/action", envelope(fmt.Sprint("rl-", i), "orders.read", "shop://orders/1", nil)); code != 200 || resp["decision"] != "ALLOW" {
			t.Fatalf("within the burst: %d %v", code, resp)
		}
	}
	code, resp := alice.post(t, "/action", envelope("rl-over", "orders.read", "shop://orders/1", nil))
	limit, _ := resp["limit"].(map[string]any)
	if code != 200 || resp["decision"] != "DENY" || !strings.HasPrefix(fmt.Sprint(resp["reason"]), "RATE_LIMIT_EXCEEDED: retry after ") ||
		resp["retry_after_seconds"].(float64) < 1 || limit["rule_id"] != "orders" || limit["remaining_tokens"] != float64(0) {
		t.Fatalf("over the burst: %d %v", code, resp)
	}
	bob := client{base: s.base, apiKey: "bob-key", agent: "shop-agent", secret: "agent-secret"}
	if _, resp := bob.post(t, "/action", envelope("rl-bob", "orders.read", "shop://orders/1", nil)); resp["decision"] != "ALLOW" {
		t.Fatalf("bob shares alice's bucket: %v", resp)
	}
	db := s.auditDB()
	for path, want := range map[string]string{
		"$.executor_metadata.rate_limit_rule_id":          "orders",
		"$.executor_metadata.rate_limit_scope":            "principal_action",
		"$.executor_metadata.rate_limit_bucket_key":       "principal_action|orders|5:alice|11:orders.read",
		"$.executor_metadata.rate_limit_remaining_tokens": "0",
		"$.result_classification":                         "",
	} {
		if want == "" {
			continue
		}
		if got := auditJSON(t, db, "rl-over", "action.decision", path); got != want {
			t.Errorf("action.decision %s = %q, want %q", path, got, want)
		}
	}
	if got := auditJSON(t, db, "rl-over", "action.completed", "$.retryable"); got != "1" {
		t.Errorf("action.completed retryable = %s", got)
	}
	if got := auditJSON(t, db, "rl-over", "action.completed", "$.result_classification"); got != "RATE_LIMIT_EXCEEDED" {
		t.Errorf("action.completed classification = %s", got)
	}

	c := &mcpClient{t: t, url: s.base + "/mcp", key: "alice-key"}
	c.initialize()
	for i := 0; i < 2; i++ {
		if text, isErr := toolText(must(c.call("update", fmt.Sprintf(`{"id":"o%d"}`, i)))); isErr {
			t.Fatalf("update %d: %s", i, text)
		}
	}
	text, isErr := toolText(must(c.call("update", `{"id":"o9"}`)))
	if !isErr || !strings.Contains(text, "RATE_LIMIT_EXCEEDED: retry after ") || !strings.Contains(text, "rule ops-update (global_tool)") {
		t.Fatalf("MCP over the global bucket: %q", text)
	}

	after := scrape(t, s.admin)
	got := map[string]float64{}
	for k, v := range after {
		got[k] = v - before[k]
	}
	wantMetrics(t, got, map[string]float64{
		`nomos_decisions_total{action_type="orders.read",decision="ALLOW",front_door="http_api",reason="allow_by_rule"}`:             4,
		`nomos_decisions_total{action_type="orders.read",decision="DENY",front_door="http_api",reason="RATE_LIMIT_EXCEEDED"}`:        1,
		`nomos_decisions_total{action_type="mcp.call",decision="ALLOW",front_door="mcp_http",reason="allow_by_rule"}`:                2,
		`nomos_decisions_total{action_type="mcp.call",decision="DENY",front_door="mcp_http",reason="RATE_LIMIT_EXCEEDED"}`:           1,
		`nomos_rate_limit_total{result="allowed",rule_id="orders",scope="principal_action"}`:                                         4,
		`nomos_rate_limit_total{result="exceeded",rule_id="orders",scope="principal_action"}`:                                        1,
		`nomos_rate_limit_total{result="exceeded",rule_id="ops-update",scope="global_tool"}`:                                         1,
		`nomos_mcp_upstream_requests_total{error_class="none",method="tools/call",outcome="success",upstream="ops"}`:                 2,
		`nomos_mcp_upstream_request_duration_seconds_count{error_class="none",method="tools/call",outcome="success",upstream="ops"}`: 2,
	})
	wantMetrics(t, after, map[string]float64{
		`nomos_mcp_upstream_breaker_state{state="closed",upstream="ops"}`: 1,
		`nomos_mcp_upstream_breaker_state{state="open",upstream="ops"}`:   0,
		`nomos_audit_events_total`:                                        -20,
		`nomos_audit_dropped_total`:                                       0,
		`nomos_mcp_sessions`:                                              1,
	})
}

// TestLoopBreakersEndToEnd: the same call repeated in one MCP session
// trips the session's breaker with a tool result that says how long to
// wait and what budget is left; another session is unaffected; the trip
// is audited with the session and counted.
func TestLoopBreakersEndToEnd(t *testing.T) {
	s, alice := startOps(t, "")
	c := &mcpClient{t: t, url: s.base + "/mcp", key: "alice-key"}
	c.initialize()
	for i := 0; i < 3; i++ {
		if text, isErr := toolText(must(c.call("lookup", `{"id":"same"}`))); isErr {
			t.Fatalf("call %d: %s", i, text)
		}
	}
	text, isErr := toolText(must(c.call("lookup", `{"id":"same"}`)))
	if !isErr || !strings.Contains(text, "LOOP_BREAKER_TRIPPED: the session reached its limit of 3 identical calls per window; wait ") ||
		!strings.Contains(text, "remaining budget: identical_calls 0") {
		t.Fatalf("fourth identical call: %q", text)
	}
	if text, isErr := toolText(must(c.call("lookup", `{"id":"other"}`))); isErr {
		t.Fatalf("a different call was refused: %s", text)
	}
	c2 := &mcpClient{t: t, url: s.base + "/mcp", key: "alice-key"}
	c2.initialize()
	if text, isErr := toolText(must(c2.call("lookup", `{"id":"same"}`))); isErr {
		t.Fatalf("another session was tripped: %s", text)
	}
	d := openDB(t, s.auditDB())
	defer d.Close()
	var n int
	err := d.QueryRow(`SELECT count(*) FROM audit_events WHERE event_type = 'action.completed'
		AND json_extract(json, '$.result_classification') = 'LOOP_BREAKER_TRIPPED'
		AND json_extract(json, '$.retryable') = 1
		AND json_extract(json, '$.executor_metadata.loop_breaker_limit') = 'identical_calls'
		AND json_extract(json, '$.executor_metadata.downstream_session_id') = ?`, c.session).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("audited trips: %d (%v)", n, err)
	}
	// The HTTP API shares the agent scope: the session caps do not apply
	// to it, so repeated HTTP actions pass.
	for i := 0; i < 5; i++ {
		if _, resp := alice.post(t, "/action", envelope(fmt.Sprint("lb-http-", i), "orders.list", "shop://orders/all", nil)); resp["decision"] != "ALLOW" {
			t.Fatalf("HTTP action %d: %v", i, resp)
		}
	}
	wantMetrics(t, scrape(t, s.admin), map[string]float64{
		`nomos_loop_breaker_trips_total{limit="identical_calls",scope="session"}`:                                           1,
		`nomos_decisions_total{action_type="mcp.call",decision="DENY",front_door="mcp_http",reason="LOOP_BREAKER_TRIPPED"}`: 1,
		`nomos_mcp_sessions`: 2,
	})
}

// TestApprovalsMetric: approvals are counted by status.
func TestApprovalsMetric(t *testing.T) {
	s, alice := startOps(t, "")
	_, resp := alice.post(t, "/action", envelope("ap-1", "payments.refund", "payments://shop/orders/1", map[string]any{"amount": 5}))
	if resp["decision"] != "REQUIRE_APPROVAL" {
		t.Fatalf("refund: %v", resp)
	}
	reviewer := client{base: s.base, apiKey: "reviewer-key"}
	if code, out := reviewer.post(t, "/approvals/decide", map[string]any{"approval_id": resp["approval_id"], "decision": "APPROVE"}); code != 200 {
		t.Fatalf("decide: %d %v", code, out)
	}
	wantMetrics(t, scrape(t, s.admin), map[string]float64{
		`nomos_approvals_total{status="requested"}`: 1,
		`nomos_approvals_total{status="approved"}`:  1,
		`nomos_decisions_total{action_type="payments.refund",decision="REQUIRE_APPROVAL",front_door="http_api",reason="require_approval_by_rule"}`: 1,
	})
}

// TestTransportGuardEndToEnd: rate_limit_per_minute answers 429
// rate_limited per principal.
func TestTransportGuardEndToEnd(t *testing.T) {
	s, alice := startOps(t, "\t\t\trate_limit_per_minute 2")
	// The window is a calendar minute; if it turns mid-test the 429 comes
	// a little later.
	var codes []int
	for i := 0; i < 5; i++ {
		code, resp := alice.post(t, "/action", envelope(fmt.Sprint("tg-", i), "orders.list", "shop://orders/all", nil))
		codes = append(codes, code)
		if code == http.StatusTooManyRequests {
			if !strings.HasPrefix(fmt.Sprint(resp["reason"]), "rate_limited: ") || resp["decision"] != "DENY" {
				t.Fatalf("429 body: %v", resp)
			}
			break
		}
	}
	if codes[0] != 200 || codes[1] != 200 || codes[len(codes)-1] != http.StatusTooManyRequests {
		t.Fatalf("status codes %v, want 200s then 429", codes)
	}
	bob := client{base: s.base, apiKey: "bob-key", agent: "shop-agent", secret: "agent-secret"}
	if code, _ := bob.post(t, "/action", envelope("tg-bob", "orders.list", "shop://orders/all", nil)); code != 200 {
		t.Fatalf("the guard is per principal; bob got %d", code)
	}
}

// waitFile waits for a file the upstream fixture creates.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", filepath.Base(path))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
