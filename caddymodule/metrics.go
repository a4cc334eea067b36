package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/mcp"
)

// metricsPoolKey holds the one metrics set of the process. It does not
// depend on the config, so every reload shares it and counters continue;
// each config registers it with its own Caddy metrics registry (served by
// the admin endpoint's /metrics and the metrics handler).
const metricsPoolKey = "nomos_metrics"

// otherLabel stands for every value a label does not name individually,
// so label sets stay bounded whatever requests carry.
const otherLabel = "other"

// metrics is every Nomos metric. Label values are bounded: decisions,
// reason codes, front doors and scopes are fixed sets; action types are
// those the loaded policy names; rule ids and upstream names come from
// the config.
type metrics struct {
	decisions        *prometheus.CounterVec
	rateLimits       *prometheus.CounterVec
	loopBreakers     *prometheus.CounterVec
	upstreamRequests *prometheus.CounterVec
	upstreamLatency  *prometheus.HistogramVec
	approvals        *prometheus.CounterVec
	state            *stateCollector
}

func newMetrics() *metrics {
	return &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nomos_decisions_total",
			Help: "Final decisions of every front door, by decision, reason code, front door and action type (types the loaded policy does not name count as other).",
		}, []string{"decision", "reason", "front_door", "action_type"}),
		rateLimits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nomos_rate_limit_total",
			Help: "rate_limits bucket checks, one per matching rule: result allowed, exceeded or not_consumed.",
		}, []string{"result", "rule_id", "scope"}),
		loopBreakers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nomos_loop_breaker_trips_total",
			Help: "Calls refused by a loop breaker, by scope (session, agent) and limit.",
		}, []string{"scope", "limit"}),
		upstreamRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nomos_mcp_upstream_requests_total",
			Help: "Requests sent to upstream MCP servers, by upstream, method, outcome and error class.",
		}, upstreamLabels),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    upstreamLatencyMetric,
			Help:    "Latency of requests sent to upstream MCP servers, by upstream, method, outcome and error class.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, upstreamLabels),
		approvals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "nomos_approvals_total",
			Help: "Approval events: requested, approved, denied, applied.",
		}, []string{"status"}),
		state: newStateCollector(),
	}
}

var upstreamLabels = []string{"upstream", "method", "outcome", "error_class"}

// upstreamLatencyMetric is the upstream latency histogram, which the
// operator UI summarizes too.
const upstreamLatencyMetric = "nomos_mcp_upstream_request_duration_seconds"

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.decisions, m.rateLimits, m.loopBreakers, m.upstreamRequests,
		m.upstreamLatency, m.approvals, m.state}
}

// provisionMetrics takes the process's metrics set and registers it with
// this config's registry.
func (a *App) provisionMetrics() error {
	a.track(metricsPoolKey)
	m, err := loadPooled(metricsPoolKey, func() (*metrics, func() error, error) {
		return newMetrics(), nil, nil
	})
	if err != nil {
		return err
	}
	if reg := a.ctx.GetMetricsRegistry(); reg != nil {
		for _, c := range m.collectors() {
			if _, err := registerOnce(reg, c); err != nil {
				return fmt.Errorf("nomos: metrics: %w", err)
			}
		}
	}
	a.metrics = m
	return nil
}

// registerOnce registers c, or returns the collector a previous
// provisioning registered under the same name (Caddy keeps one registry
// across reloads), so counters keep counting.
func registerOnce[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// hook wires a service's observers to the metrics. actionTypes are the
// types the loaded policy names.
func (m *metrics) hook(cfg *service.Config, actionTypes map[string]bool) {
	cfg.Observe = func(o service.Observation) {
		t := o.ActionType
		if !actionTypes[t] {
			t = otherLabel
		}
		m.decisions.WithLabelValues(o.Decision, reasonCode(o.Reason), o.FrontDoor, t).Inc()
	}
	cfg.ObserveRateLimit = func(result, ruleID, scope string) {
		m.rateLimits.WithLabelValues(result, ruleID, scope).Inc()
	}
	cfg.ObserveLoopBreaker = func(scope, limit string) {
		m.loopBreakers.WithLabelValues(scope, limit).Inc()
	}
}

// reasonCode is the reason without its message, or other when it is not
// a plain code (so no message text ever becomes a label).
func reasonCode(reason string) string {
	code, _, _ := strings.Cut(reason, ":")
	if code == "" || len(code) > 48 {
		return otherLabel
	}
	for _, c := range code {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return otherLabel
		}
	}
	return code
}

// policyActionTypes are the exact action types the app's policy sets name.
func (a *App) policyActionTypes() map[string]bool {
	out := map[string]bool{}
	for _, e := range a.engines {
		for _, r := range e.Rules() {
			if r.ActionType != "*" && r.ActionType != "" {
				out[r.ActionType] = true
			}
		}
	}
	return out
}

// observeUpstream feeds the upstream request metrics.
func (m *metrics) observeUpstream(o mcp.RequestObservation) {
	labels := []string{o.Upstream, mcpMethod(o.Method), o.Outcome, o.ErrorClass}
	m.upstreamRequests.WithLabelValues(labels...).Inc()
	m.upstreamLatency.WithLabelValues(labels...).Observe(o.Duration.Seconds())
}

// mcpMethods are the methods labelled by name; others count as other.
var mcpMethods = map[string]bool{
	"initialize": true, "ping": true, "tools/list": true, "tools/call": true, "resources/list": true,
	"resources/templates/list": true, "resources/read": true, "resources/subscribe": true,
	"resources/unsubscribe": true, "prompts/list": true, "prompts/get": true, "completion/complete": true,
	"logging/setLevel": true,
}

func mcpMethod(m string) string {
	if mcpMethods[m] {
		return m
	}
	return otherLabel
}

// auditObserver counts approval events as they are recorded.
func (m *metrics) auditObserver(rec service.Recorder) service.Recorder {
	return &observedRecorder{Recorder: rec, approvals: m.approvals}
}

type observedRecorder struct {
	service.Recorder
	approvals *prometheus.CounterVec
}

func (o *observedRecorder) Record(ctx context.Context, e *audit.Event) error {
	if err := o.Recorder.Record(ctx, e); err != nil {
		return err
	}
	o.count(e)
	return nil
}

// RecordAll counts the events of one commit once it is durable.
func (o *observedRecorder) RecordAll(ctx context.Context, events ...*audit.Event) error {
	if err := o.Recorder.RecordAll(ctx, events...); err != nil {
		return err
	}
	for _, e := range events {
		o.count(e)
	}
	return nil
}

func (o *observedRecorder) count(e *audit.Event) {
	switch e.EventType {
	case audit.EventApprovalRequested:
		o.approvals.WithLabelValues("requested").Inc()
	case audit.EventApprovalApplied:
		o.approvals.WithLabelValues("applied").Inc()
	case audit.EventApprovalDecided:
		o.approvals.WithLabelValues(strings.ToLower(e.Decision)).Inc()
	}
}

// goLive makes the app the one the state metrics describe: its upstreams'
// breakers and requests, its audit recorder. Called from Start, so only a
// config that is being served reports.
func (m *metrics) goLive(a *App) {
	names := make([]string, 0, len(a.upstreams))
	for n, u := range a.upstreams {
		names = append(names, n)
		u.SetObserver(m.observeUpstream)
	}
	sort.Strings(names)
	ups := make([]*mcp.Upstream, len(names))
	for i, n := range names {
		ups[i] = a.upstreams[n]
	}
	m.state.current.Store(&liveState{upstreams: ups, recorder: a.recorder, shared: a.shared})
}

// trackGateway counts a nomos_mcp route's live sessions until untracked.
func (m *metrics) trackGateway(g *mcp.Gateway)   { m.state.gateways.Store(g, true) }
func (m *metrics) untrackGateway(g *mcp.Gateway) { m.state.gateways.Delete(g) }

// liveState is what the served config exposes to the state metrics.
type liveState struct {
	upstreams []*mcp.Upstream
	recorder  *audit.Recorder
	shared    *sharedstate.Client // nil without state { redis }
}

// stateCollector reads gauges and totals at scrape time.
type stateCollector struct {
	current  atomic.Pointer[liveState]
	gateways sync.Map // *mcp.Gateway -> true

	breaker, sessions, events, dropped, sharedBreaker *prometheus.Desc
}

// breakerStates are the values of the state label.
var breakerStates = []string{"closed", "half-open", "open", "disabled"}

func newStateCollector() *stateCollector {
	return &stateCollector{
		breaker: prometheus.NewDesc("nomos_mcp_upstream_breaker_state",
			"1 for the current circuit breaker state of each upstream MCP server (closed, half-open, open, disabled), 0 for the others.",
			[]string{"upstream", "state"}, nil),
		sessions: prometheus.NewDesc("nomos_mcp_sessions",
			"Live downstream MCP sessions across nomos_mcp routes.", nil, nil),
		events: prometheus.NewDesc("nomos_audit_events_total",
			"Audit events stored by every sink of the audit recorder in use.", nil, nil),
		dropped: prometheus.NewDesc("nomos_audit_dropped_total",
			"Audit events a sink refused (the action they belonged to was denied or its failure logged); must stay 0.", nil, nil),
		sharedBreaker: prometheus.NewDesc("nomos_state_breaker_state",
			"1 for the current circuit breaker state of the shared state (Redis) client (closed, half-open, open), 0 for the others; while it is not closed, decisions that need Redis are denied as state_unavailable.",
			[]string{"state"}, nil),
	}
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.breaker
	ch <- c.sessions
	ch <- c.events
	ch <- c.dropped
	ch <- c.sharedBreaker
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	n := 0
	c.gateways.Range(func(k, _ any) bool {
		n += k.(*mcp.Gateway).Sessions()
		return true
	})
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(n))
	st := c.current.Load()
	if st == nil {
		return
	}
	for _, u := range st.upstreams {
		now := u.BreakerState()
		for _, s := range breakerStates {
			v := 0.0
			if s == now {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.breaker, prometheus.GaugeValue, v, u.Name(), s)
		}
	}
	if st.shared != nil {
		now := st.shared.Health().Breaker
		for _, s := range breakerStates[:3] {
			v := 0.0
			if s == now {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(c.sharedBreaker, prometheus.GaugeValue, v, s)
		}
	}
	if st.recorder != nil {
		stats := st.recorder.Stats()
		ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(stats.Events))
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(stats.Dropped))
	}
}
