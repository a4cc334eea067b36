package caddymodule

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

func reprovision(t *testing.T, prev *App, rt *RuntimeConfig) *App {
	t.Helper()
	next := &App{Policies: prev.Policies, Identity: prev.Identity, Audit: prev.Audit, Approvals: prev.Approvals, Runtime: rt}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := next.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = next.Cleanup() })
	return next
}

func ordersRule(burst int) *RuntimeConfig {
	return &RuntimeConfig{RateLimits: &RateLimitsConfig{
		PrincipalAction: []RateLimitRule{{ID: "orders", ActionType: "orders.read", Burst: burst, RefillPerMinute: 1}},
	}}
}

// TestBucketsSurviveUnchangedReload: a reload with the same rules keeps
// the buckets' levels; changed rules start full buckets.
func TestBucketsSurviveUnchangedReload(t *testing.T) {
	app := newTestApp(t, func(a *App) { a.Runtime = ordersRule(1) })
	if rec, _ := serve(t, newTestHandler(t, app, nil), signed(orderBody), nil); decode(t, rec)["decision"] != "ALLOW" {
		t.Fatal("first call refused")
	}
	same := reprovision(t, app, ordersRule(1))
	_ = app.Cleanup()
	if same.limiter != app.limiter {
		t.Fatal("an unchanged reload rebuilt the buckets")
	}
	rec, _ := serve(t, newTestHandler(t, same, nil), signed(orderBody), nil)
	if body := decode(t, rec); !strings.HasPrefix(body["reason"].(string), "RATE_LIMIT_EXCEEDED") {
		t.Fatalf("the reload refilled the bucket: %v", body)
	}
	changed := reprovision(t, same, ordersRule(2))
	if rec, _ := serve(t, newTestHandler(t, changed, nil), signed(orderBody), nil); decode(t, rec)["decision"] != "ALLOW" {
		t.Fatal("changed rules kept the old, empty bucket")
	}
}

// TestRateLimitShorthand: runtime { rate_limit } is one principal_action
// rule on every action type.
func TestRateLimitShorthand(t *testing.T) {
	app := newTestApp(t, func(a *App) {
		a.Runtime = &RuntimeConfig{RateLimit: &RateLimitConfig{Events: 2, Interval: caddy.Duration(time.Hour)}}
	})
	h := newTestHandler(t, app, nil)
	for i := 0; i < 2; i++ {
		if rec, _ := serve(t, h, signed(orderBody), nil); decode(t, rec)["decision"] != "ALLOW" {
			t.Fatalf("call %d refused", i)
		}
	}
	rec, _ := serve(t, h, signed(orderBody), nil)
	body := decode(t, rec)
	limit, _ := body["limit"].(map[string]any)
	if body["decision"] != "DENY" || limit["rule_id"] != "runtime.rate_limit" || limit["scope"] != "principal_action" {
		t.Fatalf("over the shorthand: %v", body)
	}
}

// TestLimitConfigErrors: bad limits refuse the config with a message that
// names the field.
func TestLimitConfigErrors(t *testing.T) {
	cases := map[string]*RuntimeConfig{
		"evict_after_seconds 60 is shorter": {RateLimits: &RateLimitsConfig{EvictAfterSeconds: 60,
			GlobalTool: []RateLimitRule{{ID: "g", ActionType: "*", Burst: 10, RefillPerMinute: 1}}}},
		"principal_resource needs a resource glob": {RateLimits: &RateLimitsConfig{
			PrincipalResource: []RateLimitRule{{ID: "r", Burst: 1, RefillPerMinute: 1}}}},
		"loop_breakers: set at least one":        {LoopBreakers: &LoopBreakersConfig{Session: &LoopLimits{}}},
		"rate_limit_per_minute must be positive": {RateLimitPerMinute: -1},
	}
	for want, rt := range cases {
		app := &App{Runtime: rt, Audit: &AuditConfig{Sinks: []SinkConfig{{Type: "stdout"}}}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := app.Provision(ctx)
		cancel()
		_ = app.Cleanup()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}
