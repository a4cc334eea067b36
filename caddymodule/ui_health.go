package caddymodule

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/service"
)

// healthWindow is how many recent MCP completions the upstream view
// summarizes.
const healthWindow = 500

// uiUpstream is one upstream MCP server's health.
type uiUpstream struct {
	Name    string   `json:"name"`
	Breaker string   `json:"breaker"`
	Tools   []string `json:"tools"`
	// Calls, ErrorRate and the latencies summarize the last completions
	// recorded in the audit log (Source says so), at most healthWindow.
	Calls     int     `json:"calls"`
	Errors    int     `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	P50MS     int64   `json:"p50_ms"`
	P95MS     int64   `json:"p95_ms"`
}

type uiUpstreams struct {
	Upstreams []uiUpstream `json:"upstreams"`
	Source    string       `json:"source"`
}

func (h *UIHandler) apiUpstreams(r *http.Request, _ uiCaller, _ []byte) (any, error) {
	stats, err := h.upstreamStatsFromAudit(r.Context())
	if err != nil {
		return nil, service.Errorf(http.StatusInternalServerError, service.CodeInternal, "audit log unavailable")
	}
	names := make([]string, 0, len(h.app.upstreams))
	for n := range h.app.upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	out := uiUpstreams{Upstreams: []uiUpstream{}, Source: "the last " + strconv.Itoa(healthWindow) + " MCP completions in the sqlite audit log"}
	if h.events == nil {
		out.Source = "no sqlite audit sink: no call statistics"
	}
	for _, n := range names {
		u := h.app.upstreams[n]
		s := stats[n]
		s.Name, s.Breaker, s.Tools = n, u.BreakerState(), u.ToolNames()
		if s.Tools == nil {
			s.Tools = []string{}
		}
		out.Upstreams = append(out.Upstreams, s)
	}
	return out, nil
}

// upstreamStatsFromAudit derives call counts, error rate and latency
// percentiles per upstream from action.completed events of MCP actions:
// their resource names the upstream (mcp://<server>/...), and the
// gateway records upstream_duration_ms and error_class. This stands in
// for in-process histograms, which mcp/ does not export on this branch.
func (h *UIHandler) upstreamStatsFromAudit(ctx context.Context) (map[string]uiUpstream, error) {
	out := map[string]uiUpstream{}
	if h.events == nil {
		return out, nil
	}
	page, err := h.events.Search(ctx, audit.SearchQuery{EventType: audit.EventActionCompleted, ActionTypePrefix: "mcp.", Limit: healthWindow})
	if err != nil {
		return nil, err
	}
	latencies := map[string][]int64{}
	for _, e := range page.Events {
		ms, ok := e.ExecutorMetadata["upstream_duration_ms"].(float64)
		server := upstreamOf(e.ResourceNormalized)
		if !ok || server == "" {
			continue // denied before reaching the upstream
		}
		s := out[server]
		s.Calls++
		if _, failed := e.ExecutorMetadata["error_class"]; failed {
			s.Errors++
		}
		out[server] = s
		latencies[server] = append(latencies[server], int64(ms))
	}
	for name, s := range out {
		l := latencies[name]
		slices.Sort(l)
		s.ErrorRate = float64(s.Errors) / float64(s.Calls)
		s.P50MS, s.P95MS = percentile(l, 50), percentile(l, 95)
		out[name] = s
	}
	return out, nil
}

func upstreamOf(resource string) string {
	rest, ok := strings.CutPrefix(resource, "mcp://")
	if !ok {
		return ""
	}
	server, _, _ := strings.Cut(rest, "/")
	return server
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []int64, p int) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100
	return sorted[max(rank, 1)-1]
}
