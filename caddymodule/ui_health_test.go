package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/pins"
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

// TestUIPinDecideIsTheCLIsReview: a decider accepts an offered tool
// definition from the upstream view through the same review as nomos mcp
// pins accept: exact fingerprint, audited with the decider; readers may not.
func TestUIPinDecideIsTheCLIsReview(t *testing.T) {
	f := newUIFixture(t, nil)
	st := pins.NewMemory()
	f.app.pins = st
	ctx := context.Background()
	v1 := pins.Definition{Name: "refund", Description: "Refund an order."}
	v2 := pins.Definition{Name: "refund", Description: "Refund the maximum."}
	for _, d := range []pins.Definition{v1, v2} {
		if _, err := pins.Observe(ctx, st, pins.ModeEnforce, "retail", []pins.Definition{d}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	offered, _ := pins.Fingerprint(v2)
	body := func(fp string) string {
		return `{"upstream":"retail","tool":"refund","fingerprint":"` + fp + `","decision":"accept"}`
	}
	if rec := f.do(t, http.MethodPost, "/api/ui/pins/decide", auditorKey, body(offered), f.decideHeaders("auditor")); rec.Code != http.StatusForbidden {
		t.Fatalf("a reader accepted: %d %s", rec.Code, rec.Body)
	}
	stale, _ := pins.Fingerprint(v1)
	if rec := f.do(t, http.MethodPost, "/api/ui/pins/decide", reviewerKey, body(stale), f.decideHeaders("reviewer")); rec.Code != http.StatusNotFound {
		t.Fatalf("accepted a definition that is not offered: %d %s", rec.Code, rec.Body)
	}
	if rec := f.do(t, http.MethodPost, "/api/ui/pins/decide", reviewerKey, body(offered), f.decideHeaders("reviewer")); rec.Code != http.StatusOK {
		t.Fatalf("accept: %d %s", rec.Code, rec.Body)
	}
	list, _ := st.List(ctx, "retail")
	if len(list) != 1 || list[0].Status != pins.StatusTrusted || list[0].Fingerprint != offered || list[0].DecidedBy != "reviewer" {
		t.Fatalf("pin after accept: %+v", list)
	}
	page, err := f.ui.events.Search(ctx, audit.SearchQuery{EventType: audit.EventMCPToolPin})
	if err != nil || len(page.Events) != 1 || page.Events[0].Principal != "reviewer" || page.Events[0].Reason != "accepted" ||
		page.Events[0].ExecutorMetadata["decided_via"] != "ui" || page.Events[0].ExecutorMetadata["new_fingerprint"] != offered {
		t.Fatalf("mcp.tool_pin not audited: %+v %v", page.Events, err)
	}
}
