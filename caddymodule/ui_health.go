package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

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
	// Pin is the upstream's pin mode; Pending are its tools waiting for
	// review (hidden under enforce, served under warn).
	Pin     string  `json:"pin"`
	Pending []uiPin `json:"pending"`
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
	pending := h.pendingPins(r.Context())
	for _, n := range names {
		u := h.app.upstreams[n]
		s := stats[n]
		s.Name, s.Breaker, s.Tools = n, u.BreakerState(), u.ToolNames()
		if s.Tools == nil {
			s.Tools = []string{}
		}
		s.Pin, s.Pending = string(u.PinMode()), pending[n]
		if s.Pending == nil {
			s.Pending = []uiPin{}
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

// uiPin is a tool of an upstream whose definition waits for review: the
// reason it is not trusted (kind), what changed, and the offered
// fingerprint an accept must name.
type uiPin struct {
	Tool               string    `json:"tool"`
	Status             string    `json:"status"`
	Kind               string    `json:"kind"`
	ChangedFields      []string  `json:"changed_fields"`
	Fingerprint        string    `json:"fingerprint,omitempty"`
	OfferedFingerprint string    `json:"offered_fingerprint"`
	UpdatedAt          time.Time `json:"updated_at"`
}

// pendingPins lists, per upstream, the tools waiting for review.
func (h *UIHandler) pendingPins(ctx context.Context) map[string][]uiPin {
	out := map[string][]uiPin{}
	if h.app.pins == nil {
		return out
	}
	list, err := h.app.pins.List(ctx, "")
	if err != nil {
		h.logger.Error("ui: pin store unavailable", zap.Error(err))
		return out
	}
	for _, p := range list {
		if p.OfferedFingerprint == "" {
			continue
		}
		d := diffOf(p)
		out[p.Upstream] = append(out[p.Upstream], uiPin{Tool: p.Tool, Status: string(p.Status), Kind: p.Kind,
			ChangedFields: d.ChangedFields, Fingerprint: p.Fingerprint, OfferedFingerprint: p.OfferedFingerprint, UpdatedAt: p.UpdatedAt})
	}
	return out
}

// uiPinDecision is the body of POST /api/ui/pins/decide.
type uiPinDecision struct {
	Upstream    string `json:"upstream"`
	Tool        string `json:"tool"`
	Fingerprint string `json:"fingerprint"`
	// Decision is accept or reject.
	Decision string `json:"decision"`
}

// apiPinDecide accepts or rejects an offered tool definition through the
// same code as nomos mcp pins accept|reject, audited with the decider.
func (h *UIHandler) apiPinDecide(r *http.Request, c uiCaller, body []byte) (any, error) {
	var d uiPinDecision
	if err := json.Unmarshal(body, &d); err != nil || d.Upstream == "" || d.Tool == "" || d.Fingerprint == "" ||
		d.Decision != "accept" && d.Decision != "reject" {
		return nil, service.Errorf(http.StatusBadRequest, service.CodeValidation, "want {upstream, tool, fingerprint, decision: accept|reject}")
	}
	if h.app.pins == nil {
		return nil, service.Errorf(http.StatusNotFound, service.CodeNotFound, "no pin store: the nomos app has no upstreams")
	}
	rev := pinReview{store: h.app.pins, recorder: h.app.recorder, env: h.app.Environment}
	p, err := rev.decide(r.Context(), d.Decision == "accept", d.Upstream, d.Tool, d.Fingerprint, c.principal, "ui")
	if err != nil {
		return nil, uiPinError(err)
	}
	h.logger.Info("tool definition reviewed in the operator UI", zap.String("upstream_server", d.Upstream),
		zap.String("upstream_tool", d.Tool), zap.String("decision", d.Decision), zap.String("principal", c.principal))
	return p, nil
}

func uiPinError(err error) error {
	var ce *cliError
	if !errors.As(err, &ce) {
		return service.Errorf(http.StatusInternalServerError, service.CodeInternal, "pin store unavailable")
	}
	switch ce.prefix {
	case "PIN_NOT_FOUND":
		return service.Errorf(http.StatusNotFound, service.CodeNotFound, "%s", ce.err.Error())
	case "AUDIT_ERROR":
		return service.Errorf(http.StatusInternalServerError, service.CodeAudit, "could not record audit event")
	}
	return service.Errorf(http.StatusInternalServerError, service.CodeInternal, "pin store unavailable")
}
