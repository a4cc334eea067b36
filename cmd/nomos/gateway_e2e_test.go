package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

const shopBundle = `version: v1
rules:
  - id: allow-orders-read
    action_type: orders.read
    resource: "shop://orders/**"
    decision: ALLOW
  - id: refund-small
    action_type: payments.refund
    resource: "payments://shop/orders/*"
    decision: ALLOW
    params_match:
      amount: {lte: 100}
  - id: refund-large
    action_type: payments.refund
    resource: "payments://shop/orders/*"
    decision: REQUIRE_APPROVAL
    params_match:
      amount: {gt: 100}
  - id: allow-workspace-read
    action_type: fs.read
    resource: "file://workspace/**"
    decision: ALLOW
  - id: deny-compensation
    action_type: payments.compensate
    resource: "payments://shop/**"
    decision: DENY
`

const gatewayCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	nomos {
		environment dev
		policy default {
			bundle shop.yaml
		}
		identity {
			api_key {env.T_ALICE_KEY} alice
			api_key {env.T_REVIEWER_KEY} reviewer
			agent_secret shop-agent {env.T_AGENT_SECRET}
		}
		audit {
			sink stdout
			sink sqlite
		}
		approvals {
			ttl 15m
			approvers reviewer
		}
		runtime {
			concurrency_limit {env.T_LIMIT}
		}
	}
}

http://127.0.0.1:{PORT} {
	nomos_api
}
`

var gatewayEnv = []string{"T_ALICE_KEY=alice-key", "T_REVIEWER_KEY=reviewer-key", "T_AGENT_SECRET=agent-secret"}

func startGateway(t *testing.T, limit int) (*server, client, client) {
	t.Helper()
	cf := strings.Replace(gatewayCaddyfile, "{env.T_LIMIT}", fmt.Sprint(limit), 1)
	s := startServer(t, cf, map[string]string{"shop.yaml": shopBundle}, gatewayEnv...)
	agent := client{base: s.base, apiKey: "alice-key", agent: "shop-agent", secret: "agent-secret"}
	reviewer := client{base: s.base, apiKey: "reviewer-key"}
	return s, agent, reviewer
}

func TestGatewayDecisions(t *testing.T) {
	_, agent, _ := startGateway(t, 32)
	cases := []struct {
		name, typ, resource string
		params              map[string]any
		decision, reason    string
	}{
		{"allow", "orders.read", "shop://orders/42", nil, "ALLOW", "allow_by_rule"},
		{"deny-by-rule", "payments.compensate", "payments://shop/orders/42", map[string]any{"amount": 5}, "DENY", "deny_by_rule"},
		{"deny-by-default", "crm.export", "crm://contacts/all", nil, "DENY", "deny_by_default"},
		{"refund-small", "payments.refund", "payments://shop/orders/7", map[string]any{"amount": 40}, "ALLOW", "allow_by_rule"},
		{"builtin-unsupported", "fs.read", "file://workspace/README.md", nil, "DENY", "unsupported_action"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, resp := agent.post(t, "/action", envelope(fmt.Sprintf("act-%d", i), c.typ, c.resource, c.params))
			if code != http.StatusOK {
				t.Fatalf("status %d: %v", code, resp)
			}
			if resp["decision"] != c.decision || !strings.HasPrefix(fmt.Sprint(resp["reason"]), c.reason) {
				t.Fatalf("got %v / %v, want %s / %s", resp["decision"], resp["reason"], c.decision, c.reason)
			}
			if resp["trace_id"] != fmt.Sprintf("trace-act-%d", i) || resp["action_id"] != fmt.Sprintf("act-%d", i) {
				t.Fatalf("ids not echoed: %v", resp)
			}
		})
	}
	code, resp := agent.post(t, "/run", envelope("run-1", "orders.read", "SHOP://orders/1", nil))
	if code != 200 || resp["decision"] != "ALLOW" || resp["execution_mode"] != "external_authorized" || resp["report_path"] != "/actions/report" {
		t.Fatalf("/run alias: %d %v", code, resp)
	}
}

func TestGatewayApprovalRoundTrip(t *testing.T) {
	s, agent, reviewer := startGateway(t, 32)
	refund := envelope("refund-1", "payments.refund", "payments://shop/orders/9", map[string]any{"amount": 250})
	_, first := agent.post(t, "/action", refund)
	if first["decision"] != "REQUIRE_APPROVAL" || first["approval_id"] == nil || first["approval_fingerprint"] == nil || first["approval_expires_at"] == nil {
		t.Fatalf("first call: %v", first)
	}
	id := first["approval_id"].(string)
	_, again := agent.post(t, "/action", refund)
	if again["approval_id"] != id {
		t.Fatalf("pending approval not reused: %v vs %s", again["approval_id"], id)
	}
	// The requester is not an approver.
	code, resp := agent.post(t, "/approvals/decide", map[string]any{"approval_id": id, "decision": "APPROVE"})
	if code != http.StatusForbidden || !strings.HasPrefix(resp["reason"].(string), "approval_forbidden") {
		t.Fatalf("non-approver decide: %d %v", code, resp)
	}
	code, resp = reviewer.post(t, "/approvals/decide", map[string]any{"approval_id": "apr_000000000000000000000000", "decision": "APPROVE"})
	if code != http.StatusNotFound {
		t.Fatalf("unknown id: %d %v", code, resp)
	}
	code, resp = reviewer.post(t, "/approvals/decide", map[string]any{"approval_id": id, "decision": "APPROVE"})
	if code != 200 || resp["status"] != "APPROVED" || resp["approval_id"] != id {
		t.Fatalf("decide: %d %v", code, resp)
	}
	code, resp = reviewer.post(t, "/approvals/decide", map[string]any{"approval_id": id, "decision": "DENY"})
	if code != http.StatusConflict {
		t.Fatalf("conflicting decide: %d %v", code, resp)
	}
	retry := envelope("refund-1", "payments.refund", "payments://shop/orders/9", map[string]any{"amount": 250})
	retry["context"] = map[string]any{"extensions": map[string]any{"approval": map[string]any{"approval_id": id}}}
	_, allowed := agent.post(t, "/action", retry)
	if allowed["decision"] != "ALLOW" || allowed["reason"] != "allow_by_approval" {
		t.Fatalf("retry with approval: %v", allowed)
	}
	changed := envelope("refund-2", "payments.refund", "payments://shop/orders/9", map[string]any{"amount": 999})
	changed["context"] = retry["context"]
	_, still := agent.post(t, "/action", changed)
	if still["decision"] != "REQUIRE_APPROVAL" || still["approval_id"] == id {
		t.Fatalf("changed params must need a new approval: %v", still)
	}
	assertEventTypes(t, s.auditDB(), "refund-1", "trace.start", "action.decision", "approval.requested", "approval.decided", "approval.applied", "action.completed", "trace.end")
}

func TestGatewayExplainAndReport(t *testing.T) {
	s, agent, _ := startGateway(t, 32)
	before := countEvents(t, s.auditDB())
	code, ex := agent.post(t, "/explain", envelope("ex-1", "payments.compensate", "payments://shop/orders/1", map[string]any{"amount": 1, "card": "4111"}))
	if code != 200 || ex["decision"] != "DENY" || ex["reason_code"] != "deny_by_rule" || ex["policy_bundle_hash"] == "" {
		t.Fatalf("explain: %d %v", code, ex)
	}
	raw, _ := json.Marshal(ex)
	if strings.Contains(string(raw), "4111") {
		t.Fatalf("explain echoed params: %s", raw)
	}
	if after := countEvents(t, s.auditDB()); after != before {
		t.Fatalf("explain wrote %d audit events", after-before)
	}
	code, rep := agent.post(t, "/actions/report", map[string]any{"action_id": "run-9", "trace_id": "trace-run-9", "outcome": "SUCCEEDED", "message": "refund issued"})
	if code != 404 {
		t.Fatalf("report of an action never authorized: %d %v", code, rep)
	}
	if code, resp := agent.post(t, "/action", envelope("run-9", "orders.read", "shop://orders/1", nil)); code != 200 || resp["execution_mode"] != "external_authorized" {
		t.Fatalf("authorize: %d %v", code, resp)
	}
	code, rep = agent.post(t, "/actions/report", map[string]any{"action_id": "run-9", "trace_id": "trace-run-9", "outcome": "SUCCEEDED", "message": "refund issued"})
	if code != 200 || rep["recorded"] != true {
		t.Fatalf("report: %d %v", code, rep)
	}
	code, rep = agent.post(t, "/actions/report", map[string]any{"action_id": "run-9", "trace_id": "trace-run-9", "outcome": "MAYBE"})
	if code != 400 {
		t.Fatalf("bad outcome: %d %v", code, rep)
	}
	assertEventTypes(t, s.auditDB(), "run-9", "action.external_reported")
}

func TestGatewayAuthFailures(t *testing.T) {
	_, agent, _ := startGateway(t, 32)
	body, _ := json.Marshal(envelope("auth-1", "orders.read", "shop://orders/1", nil))
	cases := map[string]func(*http.Request){
		"no credentials": func(r *http.Request) {
			r.Header.Del("Authorization")
			r.Header.Del("X-Nomos-Agent-Id")
			r.Header.Del("X-Nomos-Agent-Signature")
		},
		"wrong api key": func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") },
		"bad signature": func(r *http.Request) { signV2(r, "alice", "shop-agent", "wrong", body) },
		"unknown agent": func(r *http.Request) { r.Header.Set("X-Nomos-Agent-Id", "ghost") },
		"missing agent": func(r *http.Request) { r.Header.Del("X-Nomos-Agent-Id"); r.Header.Del("X-Nomos-Agent-Signature") },
		"tampered body": func(r *http.Request) {
			r.Body = io.NopCloser(bytes.NewReader(bytes.Replace(body, []byte("orders/1"), []byte("orders/2"), 1)))
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			req := agent.request("/action", body)
			mutate(req)
			code, resp := do(t, req)
			if code != http.StatusUnauthorized || !strings.HasPrefix(fmt.Sprint(resp["reason"]), "auth_error") || resp["decision"] != "DENY" {
				t.Fatalf("got %d %v", code, resp)
			}
		})
	}
	t.Run("replayed signature", func(t *testing.T) {
		req := agent.request("/action", body)
		replay := req.Clone(req.Context())
		replay.Body = io.NopCloser(bytes.NewReader(body))
		if code, resp := do(t, req); code != 200 {
			t.Fatalf("first: %d %v", code, resp)
		}
		if code, resp := do(t, replay); code != http.StatusUnauthorized {
			t.Fatalf("replay accepted: %d %v", code, resp)
		}
	})
}

func TestGatewayTransportErrors(t *testing.T) {
	_, agent, _ := startGateway(t, 32)
	big := envelope("big-1", "orders.read", "shop://orders/1", map[string]any{"blob": strings.Repeat("x", 70<<10)})
	if code, resp := agent.post(t, "/action", big); code != http.StatusRequestEntityTooLarge || resp["decision"] != "DENY" {
		t.Fatalf("oversized body: %d %v", code, resp)
	}
	req, _ := http.NewRequest(http.MethodGet, agent.base+"/action", nil)
	if code, _ := do(t, req); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /action: %d", code)
	}
	bad := []byte(`{"schema_version":"v1","action_id":"a","action_id":"b"}`)
	if code, resp := agent.post(t, "/action", bad); code != http.StatusBadRequest || !strings.HasPrefix(resp["reason"].(string), "validation_error") {
		t.Fatalf("duplicate key: %d %v", code, resp)
	}
	trav := envelope("trav-1", "orders.read", "shop://orders/%2e%2e/secret", nil)
	if code, resp := agent.post(t, "/action", trav); code != http.StatusBadRequest {
		t.Fatalf("traversal: %d %v", code, resp)
	}
	req, _ = http.NewRequest(http.MethodGet, agent.base+"/nope", nil)
	if code, resp := do(t, req); code != http.StatusNotFound || resp["decision"] != "DENY" {
		t.Fatalf("unknown path: %d %v", code, resp)
	}
	req, _ = http.NewRequest(http.MethodGet, agent.base+"/version", nil)
	if code, resp := do(t, req); code != 200 || resp["engine_version"] == nil {
		t.Fatalf("version: %d %v", code, resp)
	}
}

// TestGatewayConcurrencyLimit holds the only slot with a request whose body
// is still arriving; the next request must get 429 at once, and the slot
// must come back when the slow client leaves.
func TestGatewayConcurrencyLimit(t *testing.T) {
	s, agent, _ := startGateway(t, 1)
	// A request that needs approval waits for the approval store, whose
	// write lock the test holds: it keeps the one slot, having been read
	// and authenticated, until the lock is released.
	held := holdSlot(t, s, agent)
	defer held.release()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, resp := agent.post(t, "/action", envelope("busy-1", "orders.read", "shop://orders/1", nil))
		if code == http.StatusTooManyRequests {
			if !strings.HasPrefix(resp["reason"].(string), "rate_limited") || resp["decision"] != "DENY" {
				t.Fatalf("429 body: %v", resp)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never got 429 while a slot was held; last %d %v", code, resp)
		}
		time.Sleep(20 * time.Millisecond)
	}
	held.release()
	for time.Now().Before(deadline) {
		if code, _ := agent.post(t, "/action", envelope("free-1", "orders.read", "shop://orders/1", nil)); code == 200 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("slot was not released after the held request finished")
}

// heldSlot is a concurrency slot taken by a real, authenticated request.
type heldSlot struct {
	conn *sql.Conn
	db   *sql.DB
	done chan struct{}
	stop chan struct{}
	once sync.Once
}

// holdSlot takes the write lock of the server's approval store, then sends
// a request that needs approval: read, authenticated and inside its slot, it
// waits for the store (up to its 10 s busy timeout) until release.
func holdSlot(t *testing.T, s *server, agent client) *heldSlot {
	t.Helper()
	db := openDB(t, filepath.Join(s.dataDir, "caddy", "nomos", "approvals.db"))
	conn, err := db.Conn(context.Background())
	if err == nil {
		_, err = conn.ExecContext(context.Background(), "BEGIN IMMEDIATE")
	}
	if err != nil {
		t.Fatal(err)
	}
	h := &heldSlot{conn: conn, db: db, done: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		defer close(h.done)
		// A request that arrived while a probe had the slot was refused at
		// once: send another until release.
		for i := 0; ; i++ {
			select {
			case <-h.stop:
				return
			default:
			}
			raw, _ := json.Marshal(envelope(fmt.Sprintf("held-%d", i), "payments.refund", "payments://shop/orders/1", map[string]any{"amount": 250}))
			if resp, err := http.DefaultClient.Do(agent.request("/action", raw)); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	return h
}

// release lets the held request finish and waits for it.
func (h *heldSlot) release() {
	h.once.Do(func() {
		close(h.stop)
		_, _ = h.conn.ExecContext(context.Background(), "ROLLBACK")
		h.conn.Close()
		h.db.Close()
		<-h.done
	})
}

// TestAuditChainVerify checks the chain of a real run, then tampers with
// one row and expects `nomos audit verify` to fail.
func TestAuditChainVerify(t *testing.T) {
	s, agent, _ := startGateway(t, 32)
	for i := 0; i < 3; i++ {
		agent.post(t, "/action", envelope(fmt.Sprintf("chain-%d", i), "orders.read", "shop://orders/1", nil))
	}
	s.stop()
	out, errOut, code := runCLI(t, s.dir, "audit", "verify", "--db", s.auditDB())
	if code != 0 || !strings.Contains(out, `"ok":true`) {
		t.Fatalf("verify of untouched log: code %d\n%s\n%s", code, out, errOut)
	}
	db := openDB(t, s.auditDB())
	if _, err := db.Exec(`UPDATE audit_events SET json = replace(json, 'chain-1', 'chain-X') WHERE action_id = 'chain-1'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, errOut, code = runCLI(t, s.dir, "audit", "verify", "--db", s.auditDB())
	if code != 1 || !strings.Contains(errOut, "AUDIT_CHAIN_BROKEN") {
		t.Fatalf("tampered log passed: code %d %s", code, errOut)
	}
}

func openDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func countEvents(t *testing.T, path string) int {
	t.Helper()
	db := openDB(t, path)
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM audit_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// assertEventTypes checks that the audit log holds each event type for the
// action.
func assertEventTypes(t *testing.T, path, actionID string, types ...string) {
	t.Helper()
	db := openDB(t, path)
	defer db.Close()
	rows, err := db.Query(`SELECT event_type FROM audit_events WHERE action_id = ?`, actionID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var typ string
		if err := rows.Scan(&typ); err != nil {
			t.Fatal(err)
		}
		seen[typ] = true
	}
	for _, typ := range types {
		if !seen[typ] {
			t.Errorf("no %s event for %s (have %v)", typ, actionID, seen)
		}
	}
}

// TestApprovalsCLIWithConfig decides an approval from the command line
// against the server's own store and records the decision in its audit.
func TestApprovalsCLIWithConfig(t *testing.T) {
	s, agent, _ := startGateway(t, 32)
	refund := envelope("cli-1", "payments.refund", "payments://shop/orders/5", map[string]any{"amount": 500})
	_, first := agent.post(t, "/action", refund)
	id, _ := first["approval_id"].(string)
	if id == "" {
		t.Fatalf("no approval: %v", first)
	}
	out, errOut, code := runCLI(t, s.dir, "approvals", "list", "--config", "Caddyfile", "--status", "PENDING")
	if code != 0 || !strings.Contains(out, id) {
		t.Fatalf("list: %d %s %s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, s.dir, "approvals", "approve", id, "--config", "Caddyfile", "--approver", "ops-oncall")
	if code != 0 || !strings.Contains(out, `"status": "APPROVED"`) {
		t.Fatalf("approve: %d %s %s", code, out, errOut)
	}
	retry := envelope("cli-1", "payments.refund", "payments://shop/orders/5", map[string]any{"amount": 500})
	retry["context"] = map[string]any{"extensions": map[string]any{"approval": map[string]any{"approval_id": id}}}
	if _, resp := agent.post(t, "/action", retry); resp["reason"] != "allow_by_approval" {
		t.Fatalf("retry after CLI approval: %v", resp)
	}
	assertEventTypes(t, s.auditDB(), "cli-1", "approval.decided", "approval.applied")
	s.stop()
	if _, errOut, code := runCLI(t, s.dir, "audit", "verify", "--db", s.auditDB()); code != 0 {
		t.Fatalf("chain broken by the CLI's audit write: %s", errOut)
	}
}
