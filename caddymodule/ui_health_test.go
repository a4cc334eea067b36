package caddymodule

import (
	"testing"
	"time"

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
