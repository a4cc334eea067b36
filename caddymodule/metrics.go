package caddymodule

import (
	"errors"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-nomos/nomos/policy/action"
)

// decisionsMetric counts decided actions in Caddy's metrics registry (served
// by the admin endpoint's /metrics and the metrics handler). Labels are
// bounded: the decision, the reason code without its message, and the kind
// of action type (the built-in or MCP type itself, or "custom").
const decisionsMetric = "nomos_decisions_total"

// registerDecisions registers the counter, or reuses the one a previous
// provisioning of the same registry made.
func registerDecisions(ctx caddy.Context) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: decisionsMetric,
		Help: "Actions decided by Nomos, by decision, reason code and action type kind.",
	}, []string{"decision", "reason", "action_type"})
	err := ctx.GetMetricsRegistry().Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
			return existing, nil
		}
	}
	return c, err
}

// observeDecision returns the service hook that feeds the counter.
func observeDecision(c *prometheus.CounterVec) func(decision, reason, actionType string) {
	return func(decision, reason, actionType string) {
		code, _, _ := strings.Cut(reason, ":")
		if !action.IsBuiltin(actionType) && !action.IsMCP(actionType) {
			actionType = "custom"
		}
		c.WithLabelValues(decision, code, actionType).Inc()
	}
}
