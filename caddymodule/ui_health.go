package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/caddy-nomos/nomos/internal/service"
)

// uiUpstream is one upstream MCP server's health.
type uiUpstream struct {
	Name    string   `json:"name"`
	Breaker string   `json:"breaker"`
	Tools   []string `json:"tools"`
	// Calls, ErrorRate and the latencies summarize the upstream request
	// histogram (Source says so).
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
	var stats map[string]uiUpstream
	if h.app.metrics != nil {
		stats = upstreamStats(h.app.metrics.upstreamLatency)
	}
	names := slices.Sorted(maps.Keys(h.app.upstreams))
	out := uiUpstreams{Upstreams: []uiUpstream{}, Source: "every upstream request since the process started (metric " + upstreamLatencyMetric + ")"}
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

// upstreamStats summarizes the upstream request histogram per upstream:
// calls, errors (any outcome but success) and p50/p95, estimated from the
// buckets as Prometheus's histogram_quantile does, so the page and a
// dashboard built on the metric agree.
func upstreamStats(hv *prometheus.HistogramVec) map[string]uiUpstream {
	type agg struct {
		calls, errors uint64
		bounds        []float64
		cum           []uint64
	}
	per := map[string]*agg{}
	ch := make(chan prometheus.Metric, 16)
	go func() { hv.Collect(ch); close(ch) }()
	for m := range ch {
		var pb dto.Metric
		if m.Write(&pb) != nil || pb.GetHistogram() == nil {
			continue
		}
		up, outcome := labelValue(&pb, "upstream"), labelValue(&pb, "outcome")
		a := per[up]
		if a == nil {
			a = &agg{}
			per[up] = a
		}
		hist := pb.GetHistogram()
		a.calls += hist.GetSampleCount()
		if outcome != "success" {
			a.errors += hist.GetSampleCount()
		}
		for i, b := range hist.GetBucket() {
			if i == len(a.bounds) {
				a.bounds, a.cum = append(a.bounds, b.GetUpperBound()), append(a.cum, 0)
			}
			a.cum[i] += b.GetCumulativeCount()
		}
	}
	out := make(map[string]uiUpstream, len(per))
	for up, a := range per {
		u := uiUpstream{Calls: int(a.calls), Errors: int(a.errors)}
		if a.calls > 0 {
			u.ErrorRate = float64(a.errors) / float64(a.calls)
			u.P50MS = quantileMS(0.50, a.calls, a.bounds, a.cum)
			u.P95MS = quantileMS(0.95, a.calls, a.bounds, a.cum)
		}
		out[up] = u
	}
	return out
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// quantileMS interpolates the q-quantile inside the bucket it falls in;
// past the last finite bound it is that bound.
func quantileMS(q float64, total uint64, bounds []float64, cum []uint64) int64 {
	rank := q * float64(total)
	lower, below := 0.0, uint64(0)
	for i, upper := range bounds {
		if float64(cum[i]) >= rank {
			in := float64(cum[i] - below)
			frac := 1.0
			if in > 0 {
				frac = (rank - float64(below)) / in
			}
			return int64((lower + (upper-lower)*frac) * 1000)
		}
		lower, below = upper, cum[i]
	}
	return int64(lower * 1000)
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
	if !slices.Contains(h.approvers, c.principal) {
		// As for approvals: deciding needs a decider who is an approver.
		return nil, service.Errorf(http.StatusForbidden, service.CodeApprovalForbidden, "principal is not an approver of the nomos app")
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
