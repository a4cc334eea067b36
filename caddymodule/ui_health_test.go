package caddymodule

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/pins"
	"github.com/caddy-nomos/nomos/mcp"
)

// TestUpstreamStatsFromTheHistogram: calls, error rate and latency
// percentiles per upstream come from the upstream request histogram that
// /metrics exports, so the page and a dashboard agree.
func TestUpstreamStatsFromTheHistogram(t *testing.T) {
	m := newMetrics()
	for i := 1; i <= 20; i++ {
		o := mcp.RequestObservation{Upstream: "retail", Method: "tools/call", Outcome: "success", ErrorClass: "none",
			Duration: 20 * time.Millisecond}
		if i%5 == 0 {
			o.Outcome, o.ErrorClass, o.Duration = "error", "timeout", 400*time.Millisecond
		}
		m.observeUpstream(o)
	}
	m.observeUpstream(mcp.RequestObservation{Upstream: "crm", Method: "tools/list", Outcome: "success", ErrorClass: "none", Duration: 3 * time.Millisecond})
	stats := upstreamStats(m.upstreamLatency)
	r := stats["retail"]
	// 16 calls in (10, 25] ms, 4 in (250, 500] ms: p50 interpolates inside
	// the first bucket, p95 inside the second.
	if r.Calls != 20 || r.Errors != 4 || r.ErrorRate != 0.2 || r.P50MS < 10 || r.P50MS > 25 || r.P95MS < 250 || r.P95MS > 500 {
		t.Fatalf("retail: %+v", r)
	}
	if c := stats["crm"]; c.Calls != 1 || c.Errors != 0 || c.P50MS > 5 || len(stats) != 2 {
		t.Fatalf("stats: %+v", stats)
	}
	if got := quantileMS(0.5, 0, nil, nil); got != 0 {
		t.Fatalf("empty histogram: %d", got)
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
