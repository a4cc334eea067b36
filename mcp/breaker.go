package mcp

import (
	"context"
	"errors"
	"log/slog"

	"time"

	"github.com/sony/gobreaker/v2"
)

// breaker guards one upstream. Only transport, protocol and timeout
// failures count; JSON-RPC errors are answers, and cancellations by the
// downstream client are excluded.
type breaker struct {
	cb *gobreaker.CircuitBreaker[struct{}]
}

func newBreaker(name string, cfg BreakerConfig, log *slog.Logger) *breaker {
	if cfg.Disabled {
		return &breaker{}
	}
	threshold := uint32(cfg.FailureThreshold)
	st := gobreaker.Settings{
		Name:         name,
		MaxRequests:  1, // half-open admits a single probe
		Interval:     cfg.FailureWindow,
		BucketPeriod: bucketPeriod(cfg),
		Timeout:      cfg.OpenTimeout,
		ReadyToTrip:  func(c gobreaker.Counts) bool { return c.TotalFailures >= threshold },
		IsExcluded:   isCancellation,
		OnStateChange: func(name string, from, to gobreaker.State) {
			log.Warn("mcp upstream breaker transition", "upstream_server", name,
				"from_state", from.String(), "to_state", to.String())
		},
	}
	return &breaker{cb: gobreaker.NewCircuitBreaker[struct{}](st)}
}

// bucketPeriod makes the failure window slide in tenths.
func bucketPeriod(cfg BreakerConfig) time.Duration {
	return cfg.FailureWindow / 10
}

func isCancellation(err error) bool {
	return errors.Is(err, context.Canceled) && !errors.Is(err, ErrUpstreamTimeout)
}

// do runs fn under the breaker. An open (or busy half-open) breaker fails
// fast with ErrBreakerOpen.
func (b *breaker) do(fn func() error) error {
	if b.cb == nil {
		return fn()
	}
	_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return newUpstreamError(ErrBreakerOpen, nil, "upstream %q breaker is open", b.cb.Name())
	}
	return err
}

// State is the breaker state: disabled, closed, half-open or open.
func (b *breaker) state() string {
	if b.cb == nil {
		return "disabled"
	}
	return b.cb.State().String()
}
