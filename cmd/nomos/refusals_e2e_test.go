package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// refusal is one request a door refuses, and the audit it must leave: an
// event of eventType classified class on resource (or of actionType when
// the request never became an action), labelled with the door's transport.
type refusal struct {
	name                  string
	tool                  string
	args                  map[string]any
	eventType, class      string
	resource, actionType  string
	completedAndTraceEnds bool
}

// TestMCPRefusalsAuditedPerDoor: every MCP refusal, from every door, is in
// the audit log with the transport it came in on (issue 9).
func TestMCPRefusalsAuditedPerDoor(t *testing.T) {
	shared := []refusal{
		{name: "unknown tool", tool: "no_such_tool", args: map[string]any{"x": 1},
			eventType: "action.decision", class: "VALIDATION_ERROR", resource: "mcp://retail/no_such_tool"},
		{name: "tool hidden by policy", tool: "issue_compensation", args: map[string]any{"order_id": "1002", "value": 5},
			eventType: "action.decision", class: "VALIDATION_ERROR", resource: "mcp://retail/issue_compensation"},
		{name: "arguments refused by the schema", tool: "refund_order", args: map[string]any{"order_id": "1001", "amount": "lots"},
			eventType: "action.decision", class: "VALIDATION_ERROR", resource: "mcp://retail/refund_order"},
		{name: "require approval", tool: "refund_order", args: map[string]any{"order_id": "1002", "amount": 250},
			eventType: "action.completed", class: "REQUIRE_APPROVAL", resource: "mcp://retail/refund_order", completedAndTraceEnds: true},
	}
	stdioOnly := []refusal{
		{name: "built-in with invalid arguments", tool: "nomos_fs_read", args: map[string]any{"nope": true},
			eventType: "action.decision", class: "VALIDATION_ERROR", actionType: "fs.read"},
		{name: "built-in denied by policy", tool: "nomos_fs_read", args: map[string]any{"path": ".env"},
			eventType: "action.completed", class: "DENIED_POLICY", resource: "file://workspace/.env", completedAndTraceEnds: true},
	}

	t.Run("streamable_http", func(t *testing.T) {
		s := startMCPGateway(t)
		c := &mcpClient{t: t, url: s.base + "/mcp", key: "alice-key"}
		c.initialize()
		for _, r := range shared {
			raw := mustJSON(t, r.args)
			c.call(r.tool, raw)
		}
		checkRefusals(t, s.auditDB(), "streamable_http", shared)
	})
	t.Run("stdio", func(t *testing.T) {
		r := startStdio(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		all := append(append([]refusal{}, shared...), stdioOnly...)
		for _, c := range all {
			_, _ = r.cs.CallTool(ctx, &mcpsdk.CallToolParams{Name: c.tool, Arguments: c.args})
		}
		r.stop(t)
		checkRefusals(t, filepath.Join(r.dataDir, "caddy", "nomos", "audit.db"), "stdio", all)
	})
}

func checkRefusals(t *testing.T, dbPath, transport string, cases []refusal) {
	t.Helper()
	db := openDB(t, dbPath)
	defer db.Close()
	for _, r := range cases {
		n := countRefusals(t, db, r.eventType, transport, r)
		if n == 0 {
			t.Errorf("%s over %s: no %s %s audited with downstream_transport %s", r.name, transport, r.eventType, r.class, transport)
		}
		if r.completedAndTraceEnds && countTraceEnds(t, db, r.resource) == 0 {
			t.Errorf("%s over %s: no trace.end", r.name, transport)
		}
	}
}

func countRefusals(t *testing.T, db *sql.DB, eventType, transport string, r refusal) int {
	t.Helper()
	var n int
	err := db.QueryRow(`SELECT count(*) FROM audit_events WHERE event_type = ?
		AND json_extract(json, '$.decision') IN ('DENY', 'REQUIRE_APPROVAL')
		AND json_extract(json, '$.result_classification') = ?
		AND json_extract(json, '$.executor_metadata.downstream_transport') = ?
		AND (? = '' OR json_extract(json, '$.resource_normalized') = ?)
		AND (? = '' OR json_extract(json, '$.action_type') = ?)`,
		eventType, r.class, transport, r.resource, r.resource, r.actionType, r.actionType).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func countTraceEnds(t *testing.T, db *sql.DB, resource string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM audit_events WHERE event_type = 'trace.end'
		AND json_extract(json, '$.resource_normalized') = ?`, resource).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
