package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"go.uber.org/zap"

	"github.com/caddy-nomos/nomos/mcp"
)

// GuardBreakerConfig is the circuit breaker of a nomos_guard around the
// handlers after it. Its settings are those of the MCP upstream breakers,
// with the same defaults. 5xx answers, transport failures (reverse_proxy's
// 502 and 504) and, when set, slow answers count as failures; clients that
// go away do not count.
type GuardBreakerConfig struct {
	BreakerConfig
	// LatencyThreshold counts an answer whose status line took longer than
	// this as a failure, although it still reaches the client.
	// Default: 0 (off).
	LatencyThreshold caddy.Duration `json:"latency_threshold,omitempty"`
}

func (c *GuardBreakerConfig) applyDefaults() {
	if c.FailureThreshold <= 0 {
		c.FailureThreshold = mcp.DefaultFailureThreshold
	}
	if c.FailureWindow <= 0 {
		c.FailureWindow = caddy.Duration(mcp.DefaultFailureWindow)
	}
	if c.OpenTimeout <= 0 {
		c.OpenTimeout = caddy.Duration(mcp.DefaultOpenTimeout)
	}
}

func (c *GuardBreakerConfig) validate() error {
	if c.LatencyThreshold < 0 {
		return errors.New("nomos_guard: breaker: latency_threshold must not be negative")
	}
	return nil
}

func (c *GuardBreakerConfig) latencyThreshold() time.Duration {
	if c.Disabled {
		return 0
	}
	return time.Duration(c.LatencyThreshold)
}

// breakerOutcome is how one forwarded request counts.
type breakerOutcome int

const (
	breakerSuccess breakerOutcome = iota
	breakerFailure
	breakerExcluded
)

func outcomeFor(failed bool) breakerOutcome {
	if failed {
		return breakerFailure
	}
	return breakerSuccess
}

// breakerDone reports the outcome of a request the breaker let through.
type breakerDone func(breakerOutcome)

// errUpstreamFailed is what the breaker records for a failed request.
var errUpstreamFailed = errors.New("upstream failed")

// guardBreaker is pooled by configuration, so an unchanged reload keeps
// its state; hooks point at the newest config's logger and metrics.
type guardBreaker struct {
	cb    *gobreaker.TwoStepCircuitBreaker[struct{}]
	hooks atomic.Pointer[breakerHooks]
}

type breakerHooks struct {
	guard       string
	logger      *zap.Logger
	transitions breakerObserver
}

func newGuardBreaker(name string, c *GuardBreakerConfig) *guardBreaker {
	gb := new(guardBreaker)
	if c.Disabled {
		return gb
	}
	threshold := uint32(c.FailureThreshold)
	gb.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:          name,
		MaxRequests:   1, // half-open lets one real request through as the probe
		Interval:      time.Duration(c.FailureWindow),
		BucketPeriod:  time.Duration(c.FailureWindow) / 10,
		Timeout:       time.Duration(c.OpenTimeout),
		ReadyToTrip:   func(n gobreaker.Counts) bool { return n.TotalFailures >= threshold },
		IsExcluded:    func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: gb.transition,
	})
	return gb
}

// transition logs a state change and counts it.
func (gb *guardBreaker) transition(_ string, from, to gobreaker.State) {
	h := gb.hooks.Load()
	if h == nil {
		return
	}
	h.logger.Warn("guard breaker transition", zap.String("guard", h.guard),
		zap.String("from_state", from.String()), zap.String("to_state", to.String()))
	if h.transitions != nil {
		h.transitions.WithLabelValues(h.guard, from.String(), to.String()).Inc()
	}
}

// allow asks to forward one request. open means the breaker refused it;
// otherwise done must be called once with the outcome.
func (gb *guardBreaker) allow() (breakerDone, bool) {
	if gb == nil || gb.cb == nil {
		return nil, false
	}
	done, err := gb.cb.Allow()
	if err != nil {
		return nil, true
	}
	return func(o breakerOutcome) {
		switch o {
		case breakerFailure:
			done(errUpstreamFailed)
		case breakerExcluded:
			done(context.Canceled)
		default:
			done(nil)
		}
	}, false
}

// state is the breaker state for logs and tests: disabled, closed,
// half-open or open.
func (gb *guardBreaker) state() string {
	if gb == nil || gb.cb == nil {
		return "disabled"
	}
	return gb.cb.State().String()
}

// loadBreaker takes the guard's breaker from the pool. The key holds the
// guard's name and breaker settings, and the guard's rank among guards of
// this config with the same key, so two guards never share a breaker.
func (h *GuardHandler) loadBreaker(app *App, transitions breakerObserver) error {
	h.poolKey = app.uniqueGuardKey(configKey("guard_breaker", h.Name, h.Breaker))
	gb, err := loadPooled(h.poolKey, func() (*guardBreaker, func() error, error) {
		return newGuardBreaker(h.Name, h.Breaker), nil, nil
	})
	if err != nil {
		return fmt.Errorf("nomos_guard: breaker: %w", err)
	}
	gb.hooks.Store(&breakerHooks{guard: h.Name, logger: h.logger, transitions: transitions})
	h.breaker = gb
	return nil
}

// uniqueGuardKey numbers repeated keys in provisioning order, which is the
// config's order and so stable across reloads.
func (a *App) uniqueGuardKey(key string) string {
	if a.guardKeys == nil {
		a.guardKeys = map[string]int{}
	}
	a.guardKeys[key]++
	return fmt.Sprintf("%s#%d", key, a.guardKeys[key])
}

// breakerObserver counts breaker transitions.
type breakerObserver = *prometheus.CounterVec

// guardBreakerMetric counts breaker state changes of every guard.
const guardBreakerMetric = "nomos_guard_breaker_transitions_total"

// registerBreakerTransitions registers the counter, or reuses the one a
// previous provisioning of the same registry made.
func registerBreakerTransitions(ctx caddy.Context) (breakerObserver, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: guardBreakerMetric,
		Help: "Circuit breaker state changes of nomos_guard handlers, by guard name and states.",
	}, []string{"guard", "from_state", "to_state"})
	return registerOnce(ctx.GetMetricsRegistry(), c)
}
