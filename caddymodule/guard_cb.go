package caddymodule

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"github.com/sony/gobreaker/v2"
)

func init() {
	caddy.RegisterModule(new(ProxyBreaker))
}

// ProxyBreaker is a circuit breaker for reverse_proxy's own circuit_breaker
// slot (JSON configs only; the Caddyfile has no subdirective for it). It
// is weaker than nomos_guard's breaker: reverse_proxy asks OK() for every
// candidate during upstream selection and reports only responses, never
// transport errors, through RecordMetric. So OK() only reads the state,
// and after the open timeout the first response recorded decides. Settings
// and defaults are those of nomos_guard's breaker.
type ProxyBreaker struct {
	// Name keys the breaker's state, which survives reloads while the
	// name and settings stay the same; reverse_proxy handlers that use one
	// name share one breaker. Default: none (required).
	Name string `json:"name"`
	GuardBreakerConfig

	breaker *guardBreaker
	poolKey string
}

// CaddyModule returns the Caddy module information.
func (*ProxyBreaker) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.reverse_proxy.circuit_breakers.nomos",
		New: func() caddy.Module { return new(ProxyBreaker) },
	}
}

// Provision takes the pooled breaker for this name and settings.
func (b *ProxyBreaker) Provision(ctx caddy.Context) error {
	if b.Name == "" {
		return errors.New("nomos circuit breaker: name is required")
	}
	if b.Disabled {
		return errors.New("nomos circuit breaker: disabled makes no sense here; remove the circuit_breaker instead")
	}
	b.applyDefaults()
	if err := b.validate(); err != nil {
		return err
	}
	b.poolKey = configKey("proxy_breaker", b.Name, b.GuardBreakerConfig)
	gb, err := loadPooled(b.poolKey, func() (*guardBreaker, func() error, error) {
		return newGuardBreaker(b.Name, &b.GuardBreakerConfig), nil, nil
	})
	if err != nil {
		return fmt.Errorf("nomos circuit breaker: %w", err)
	}
	transitions, err := registerBreakerTransitions(ctx)
	if err != nil {
		return fmt.Errorf("nomos circuit breaker: metrics: %w", err)
	}
	gb.hooks.Store(&breakerHooks{guard: b.Name, logger: ctx.Logger(), transitions: transitions})
	b.breaker = gb
	return nil
}

// OK reports whether upstreams may be selected; it never changes state.
func (b *ProxyBreaker) OK() bool {
	return b.breaker.cb.State() != gobreaker.StateOpen
}

// RecordMetric counts one response: a 5xx status, or a latency above the
// threshold, is a failure.
func (b *ProxyBreaker) RecordMetric(statusCode int, latency time.Duration) {
	done, open := b.breaker.allow()
	if open {
		return
	}
	threshold := time.Duration(b.LatencyThreshold)
	done(outcomeFor(statusCode >= 500 || threshold > 0 && latency > threshold))
}

// Cleanup releases the pooled breaker.
func (b *ProxyBreaker) Cleanup() error {
	if b.poolKey == "" {
		return nil
	}
	_, err := pool.Delete(b.poolKey)
	return err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*ProxyBreaker)(nil)
	_ caddy.CleanerUpper          = (*ProxyBreaker)(nil)
	_ reverseproxy.CircuitBreaker = (*ProxyBreaker)(nil)
)
