package caddymodule

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/caddy-nomos/nomos/audit"
)

// TestUpstreamStatsFromAudit: calls, error rate and latency percentiles
// per upstream come from the gateway's action.completed events; calls
// that never reached an upstream do not count.
func TestUpstreamStatsFromAudit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	sink, err := audit.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := audit.NewRecorder([]audit.Sink{sink})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	write := func(i int, resource string, meta map[string]any) {
		ev := &audit.Event{EventType: audit.EventActionCompleted, TraceID: fmt.Sprint("t", i), ActionID: fmt.Sprint("a", i),
			Principal: "alice", ActionType: "mcp.call", ResourceNormalized: resource, ExecutorMetadata: meta}
		if err := rec.Record(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 20; i++ {
		meta := map[string]any{"upstream_duration_ms": i * 10}
		if i%5 == 0 {
			meta["error_class"] = "timeout"
		}
		write(i, "mcp://retail/lookup_order", meta)
	}
	write(21, "mcp://retail/refund_order", nil)                                   // denied: never sent
	write(22, "mcp://crm/export", map[string]any{"upstream_duration_ms": 7})      // another upstream
	write(23, "payments://shop/1", map[string]any{"upstream_duration_ms": 99999}) // not MCP
	reader, err := audit.OpenSQLiteReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	h := &UIHandler{events: reader}
	stats, err := h.upstreamStatsFromAudit(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := stats["retail"]
	if r.Calls != 20 || r.Errors != 4 || r.ErrorRate != 0.2 || r.P50MS != 100 || r.P95MS != 190 {
		t.Fatalf("retail: %+v", r)
	}
	if c := stats["crm"]; c.Calls != 1 || c.P50MS != 7 || c.P95MS != 7 || len(stats) != 2 {
		t.Fatalf("stats: %+v", stats)
	}
}
