package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Regression tests of issue 8, findings 4, 5, 6, 8 and 10, through the
// built binary. (Finding 2 is in testdata/bypass/cases.jsonl.)

// TestSlowClientsDoNotTakeSlots is finding 6: 32 unauthenticated clients
// that send Content-Length: 1000 and one byte must not take the 32
// concurrency slots (nor may 32 authenticated ones); valid signed requests
// are answered normally meanwhile.
func TestSlowClientsDoNotTakeSlots(t *testing.T) {
	s, agent, _ := startGateway(t, 32)
	host := strings.TrimPrefix(s.base, "http://")
	var slow []net.Conn
	defer func() {
		for _, c := range slow {
			c.Close()
		}
	}()
	// 32 without credentials (refused on their headers, before the body),
	// and 32 more with a valid API key, whose bodies never finish: neither
	// kind may hold a slot while its body trickles in.
	for i := 0; i < 64; i++ {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
		auth := ""
		if i >= 32 {
			auth = "Authorization: Bearer alice-key\r\n"
		}
		fmt.Fprintf(c, "POST /action HTTP/1.1\r\nHost: %s\r\n%sContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", host, auth)
	}
	// Each of these would have been a 429 while the slow bodies held the
	// slots; spread over a while so the slow requests have surely been
	// dispatched to the handler.
	for i := 0; i < 20; i++ {
		code, resp := agent.post(t, "/action", envelope(fmt.Sprintf("slow-probe-%d", i), "orders.read", "shop://orders/1", nil))
		if code != http.StatusOK || resp["decision"] != "ALLOW" {
			t.Fatalf("probe %d while 32 slow clients wait: %d %v", i, code, resp)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestCaddyfileExampleReadTimeouts: the shipped Caddyfile cuts off slow
// clients with server read timeouts.
func TestCaddyfileExampleReadTimeouts(t *testing.T) {
	out, errOut, code := runCLI(t, "../..", "adapt", "--config", "Caddyfile.example")
	if code != 0 {
		t.Fatalf("adapt: %d %s", code, errOut)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					ReadTimeout       int64 `json:"read_timeout"`
					ReadHeaderTimeout int64 `json:"read_header_timeout"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Apps.HTTP.Servers) == 0 {
		t.Fatal("no servers")
	}
	for name, srv := range cfg.Apps.HTTP.Servers {
		if srv.ReadTimeout <= 0 || srv.ReadHeaderTimeout <= 0 {
			t.Errorf("server %s: read_timeout %d, read_header_timeout %d", name, srv.ReadTimeout, srv.ReadHeaderTimeout)
		}
	}
}

// refundForApproval asks for a refund that needs approval and returns the
// approval id.
func refundForApproval(t *testing.T, c client, id string, amount int, approvalID string) (int, map[string]any) {
	t.Helper()
	env := envelope(id, "payments.refund", "payments://shop/orders/7", map[string]any{"amount": amount})
	if approvalID != "" {
		env["context"] = map[string]any{"extensions": map[string]any{"approval": map[string]any{"approval_id": approvalID}}}
	}
	return c.post(t, "/action", env)
}

func approvalStatus(t *testing.T, s *server, id string) string {
	t.Helper()
	db := openDB(t, filepath.Join(s.dataDir, "caddy", "nomos", "approvals.db"))
	defer db.Close()
	var status string
	if err := db.QueryRow(`SELECT status FROM approvals WHERE approval_id = ?`, id).Scan(&status); err != nil {
		t.Fatal(err)
	}
	return status
}

// TestSelfApprovalRefused is finding 5: the reviewer's key requests a 5000
// refund, then tries to approve it, over HTTP and with the CLI, under any
// spelling of its name. Each attempt is a 403 (CLI: exit 1) and audited;
// the approval stays pending until another principal decides.
func TestSelfApprovalRefused(t *testing.T) {
	s, _, reviewer := startGateway(t, 32)
	asAgent := reviewer
	asAgent.agent, asAgent.secret = "shop-agent", "agent-secret"
	code, resp := refundForApproval(t, asAgent, "self-1", 5000, "")
	id, _ := resp["approval_id"].(string)
	if code != 200 || resp["decision"] != "REQUIRE_APPROVAL" || id == "" {
		t.Fatalf("request: %d %v", code, resp)
	}
	code, resp = reviewer.post(t, "/approvals/decide", map[string]any{"approval_id": id, "decision": "APPROVE"})
	if code != http.StatusForbidden || !strings.HasPrefix(fmt.Sprint(resp["reason"]), "approval_forbidden: ") {
		t.Fatalf("self-approval over HTTP: %d %v", code, resp)
	}
	for _, who := range []string{"reviewer", "REVIEWER"} {
		_, errOut, code := runCLI(t, s.dir, "approvals", "approve", id, "--config", "Caddyfile", "--approver", who)
		if code != 1 || !strings.Contains(errOut, "APPROVAL_FORBIDDEN") {
			t.Fatalf("self-approval with the CLI as %s: exit %d %s", who, code, errOut)
		}
	}
	if st := approvalStatus(t, s, id); st != "PENDING" {
		t.Fatalf("approval is %s after refused self-approvals", st)
	}
	if code, resp := refundForApproval(t, asAgent, "self-1", 5000, id); code != 200 || resp["decision"] != "REQUIRE_APPROVAL" {
		t.Fatalf("retry: %d %v", code, resp)
	}
	db := openDB(t, s.auditDB())
	defer db.Close()
	var n int
	err := db.QueryRow(`SELECT count(*) FROM audit_events WHERE event_type = 'approval.decided'
		AND json_extract(json, '$.approval_id') = ? AND json_extract(json, '$.decision') = 'DENY'
		AND json_extract(json, '$.reason') = 'approval_forbidden: separation_of_duties'`, id).Scan(&n)
	if err != nil || n != 3 {
		t.Fatalf("audited refusals: %d (%v)", n, err)
	}
	// Another principal decides; the reviewer's request then goes through.
	if out, errOut, code := runCLI(t, s.dir, "approvals", "approve", id, "--config", "Caddyfile", "--approver", "ops-oncall"); code != 0 {
		t.Fatalf("approve by ops-oncall: %d %s %s", code, out, errOut)
	}
	if code, resp := refundForApproval(t, asAgent, "self-1", 5000, id); code != 200 || resp["reason"] != "allow_by_approval" {
		t.Fatalf("retry after approval: %d %v", code, resp)
	}
}

// TestUnauditedDecisionDoesNotTakeEffect is finding 8: with audit.db locked,
// /approvals/decide fails, and the approval is not APPROVED afterwards: the
// retry still needs approval and there is no approval.decided event.
func TestUnauditedDecisionDoesNotTakeEffect(t *testing.T) {
	s, agent, reviewer := startGateway(t, 32)
	code, resp := refundForApproval(t, agent, "unaudited-1", 250, "")
	id, _ := resp["approval_id"].(string)
	if code != 200 || id == "" {
		t.Fatalf("request: %d %v", code, resp)
	}
	db := openDB(t, s.auditDB())
	defer db.Close()
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	code, resp = reviewer.post(t, "/approvals/decide", map[string]any{"approval_id": id, "decision": "APPROVE"})
	// The CLI, recording in the server's audit log, fails the same way.
	_, cliErr, cliCode := runCLI(t, s.dir, "approvals", "approve", id, "--config", "Caddyfile", "--approver", "ops-oncall")
	if _, err := conn.ExecContext(context.Background(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if code != http.StatusInternalServerError || !strings.HasPrefix(fmt.Sprint(resp["reason"]), "audit_error: ") {
		t.Fatalf("decide with audit locked: %d %v", code, resp)
	}
	if cliCode != 1 || !strings.Contains(cliErr, "AUDIT_ERROR") {
		t.Fatalf("CLI decision with audit locked: exit %d %s", cliCode, cliErr)
	}
	if st := approvalStatus(t, s, id); st != "PENDING" {
		t.Fatalf("an unaudited decision took effect: %s", st)
	}
	if code, resp := refundForApproval(t, agent, "unaudited-1", 250, id); code != 200 || resp["decision"] != "REQUIRE_APPROVAL" {
		t.Fatalf("retry: %d %v", code, resp)
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM audit_events WHERE event_type = 'approval.decided' AND json_extract(json, '$.approval_id') = ?`, id).Scan(&n); err != nil || n != 0 {
		t.Fatalf("approval.decided events: %d (%v)", n, err)
	}
	// With audit back, the same decision is recorded and takes effect.
	if code, resp := reviewer.post(t, "/approvals/decide", map[string]any{"approval_id": id, "decision": "APPROVE"}); code != 200 || resp["status"] != "APPROVED" {
		t.Fatalf("decide: %d %v", code, resp)
	}
	if code, resp := refundForApproval(t, agent, "unaudited-1", 250, id); code != 200 || resp["reason"] != "allow_by_approval" {
		t.Fatalf("retry after approval: %d %v", code, resp)
	}
}

// TestReportOnlyAuthorizedActions is finding 10: a principal can report
// only actions authorized for it; anything else is a 404 and not recorded.
func TestReportOnlyAuthorizedActions(t *testing.T) {
	s, alice, _ := startGateway(t, 32)
	bob := client{base: s.base, apiKey: "reviewer-key", agent: "shop-agent", secret: "agent-secret"}
	if code, resp := alice.post(t, "/action", envelope("rep-1", "orders.read", "shop://orders/1", nil)); code != 200 || resp["execution_mode"] != "external_authorized" {
		t.Fatalf("authorize: %d %v", code, resp)
	}
	if code, resp := alice.post(t, "/action", envelope("rep-denied", "payments.compensate", "payments://shop/orders/1", map[string]any{"amount": 5})); code != 200 || resp["decision"] != "DENY" {
		t.Fatalf("deny: %d %v", code, resp)
	}
	report := func(c client, actionID string) int {
		code, _ := c.post(t, "/actions/report", map[string]any{"action_id": actionID, "trace_id": "trace-" + actionID, "outcome": "SUCCEEDED"})
		return code
	}
	for _, c := range []struct {
		who      client
		name, id string
	}{{bob, "never existed", "rep-ghost"}, {bob, "alice's action", "rep-1"}, {alice, "a denied action", "rep-denied"}} {
		if code := report(c.who, c.id); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", c.name, code)
		}
	}
	db := openDB(t, s.auditDB())
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM audit_events WHERE event_type = 'action.external_reported'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused reports recorded: %d (%v)", n, err)
	}
	if code := report(alice, "rep-1"); code != 200 {
		t.Fatalf("alice's report: %d", code)
	}
}

var regexpApproval = regexp.MustCompile(`apr_[0-9a-f]{24}`)

// TestRetailApprovalBoundToRefund is finding 4, on the shipped retail
// policy through the MCP gateway: approving a refund of 101 on order 1001
// does not approve 400 on order 1002.
func TestRetailApprovalBoundToRefund(t *testing.T) {
	s := startMCPGateway(t)
	c := &mcpClient{t: t, url: s.base + "/mcp", key: "alice-key"}
	c.initialize()
	text, isErr := toolText(must(c.call("refund_order", `{"order_id":"1001","amount":101}`)))
	id := regexpApproval.FindString(text)
	if !isErr || id == "" {
		t.Fatalf("refund of 101: %q", text)
	}
	if out, errOut, code := runCLI(t, s.dir, "approvals", "approve", id, "--config", "Caddyfile", "--approver", "reviewer"); code != 0 {
		t.Fatalf("approve: %d %s %s", code, out, errOut)
	}
	text, isErr = toolText(must(c.call("refund_order", `{"order_id":"1002","amount":400,"approval_id":"`+id+`"}`)))
	if !isErr || !strings.Contains(text, "REQUIRE_APPROVAL") {
		t.Fatalf("another refund reused the approval: %q", text)
	}
	if text, _ := toolText(must(c.call("lookup_order", `{"order_id":"1002"}`))); !strings.Contains(text, "refunded 0.00") {
		t.Fatalf("order 1002 was refunded: %q", text)
	}
	// The approved call itself is forwarded (the demo upstream then refuses
	// it: order 1001 totals 80).
	if text, _ := toolText(must(c.call("refund_order", `{"order_id":"1001","amount":101,"approval_id":"`+id+`"}`))); !strings.Contains(text, "exceeds the order total") {
		t.Fatalf("the approved refund was not forwarded: %q", text)
	}
}
