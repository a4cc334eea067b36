package caddymodule

import (
	"fmt"
	"time"

	"github.com/caddy-nomos/nomos/internal/loopguard"
	"github.com/caddy-nomos/nomos/internal/ratelimit"
)

// shorthandRuleID names the rule runtime { rate_limit } stands for.
const shorthandRuleID = "runtime.rate_limit"

// provisionLimits builds the rate_limits buckets, the loop breakers and
// the transport window. Each is pooled by its configuration, so a reload
// that leaves it unchanged keeps its counters.
func (a *App) provisionLimits() error {
	steps := []func() error{a.provisionRateLimits, a.provisionLoopGuard, a.provisionWindow}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) provisionRateLimits() error {
	cfg, ok := rateLimiterConfig(a.Runtime)
	if !ok {
		return nil
	}
	key := configKey("rate_limits", cfg)
	a.track(key)
	l, err := loadPooled(key, func() (*ratelimit.Rules, func() error, error) {
		l, err := ratelimit.NewRules(cfg)
		return l, nil, err
	})
	if err != nil {
		return fmt.Errorf("nomos: runtime: %w", err)
	}
	a.limiter = l
	return nil
}

// rateLimiterConfig merges the rate_limits rules and the rate_limit
// shorthand; ok is false when neither is set.
func rateLimiterConfig(rt *RuntimeConfig) (ratelimit.RulesConfig, bool) {
	var cfg ratelimit.RulesConfig
	if rl := rt.RateLimits; rl != nil {
		cfg.EvictAfter = time.Duration(rl.EvictAfterSeconds) * time.Second
		cfg.MaxBuckets = rl.MaxBuckets
		cfg.Rules = append(cfg.Rules, rules(ratelimit.ScopePrincipalAction, rl.PrincipalAction)...)
		cfg.Rules = append(cfg.Rules, rules(ratelimit.ScopePrincipalResource, rl.PrincipalResource)...)
		cfg.Rules = append(cfg.Rules, rules(ratelimit.ScopeGlobalTool, rl.GlobalTool)...)
	}
	if s := rt.RateLimit; s != nil {
		cfg.Rules = append(cfg.Rules, shorthandRule(s))
	}
	if len(cfg.Rules) == 0 {
		return cfg, false
	}
	if cfg.EvictAfter <= 0 {
		cfg.EvictAfter = max(ratelimit.DefaultEvictAfter, slowestRefill(cfg.Rules))
	}
	return cfg, true
}

func rules(scope string, in []RateLimitRule) []ratelimit.Rule {
	out := make([]ratelimit.Rule, len(in))
	for i, r := range in {
		out[i] = ratelimit.Rule{ID: r.ID, Scope: scope, Principal: r.Principal, ActionType: r.ActionType,
			Resource: r.Resource, Burst: r.Burst, RefillPerMinute: r.RefillPerMinute}
	}
	return out
}

// shorthandRule is the principal_action rule runtime { rate_limit } means.
func shorthandRule(s *RateLimitConfig) ratelimit.Rule {
	burst := s.Burst
	if burst <= 0 {
		burst = s.Events
	}
	perMinute := 0.0
	if s.Interval > 0 {
		perMinute = float64(s.Events) / time.Duration(s.Interval).Minutes()
	}
	return ratelimit.Rule{ID: shorthandRuleID, Scope: ratelimit.ScopePrincipalAction, ActionType: "*",
		Burst: burst, RefillPerMinute: perMinute}
}

// slowestRefill is the longest time any rule takes to refill its burst,
// rounded up to a second; an unset evict_after_seconds never undercuts it.
func slowestRefill(rs []ratelimit.Rule) time.Duration {
	var d time.Duration
	for _, r := range rs {
		if r.RefillPerMinute > 0 {
			d = max(d, time.Duration(float64(r.Burst)/r.RefillPerMinute*float64(time.Minute)))
		}
	}
	return d.Truncate(time.Second) + time.Second
}

func (a *App) provisionLoopGuard() error {
	lb := a.Runtime.LoopBreakers
	if lb == nil {
		return nil
	}
	cfg := loopguard.Config{Window: time.Duration(lb.Window), ReadOnly: lb.ReadOnly, MaxTracked: lb.MaxTracked,
		Session: loopLimits(lb.Session), Agent: loopLimits(lb.Agent)}
	key := configKey("loop_breakers", cfg)
	a.track(key)
	g, err := loadPooled(key, func() (*loopguard.Guard, func() error, error) {
		g, err := loopguard.New(cfg)
		return g, nil, err
	})
	if err != nil {
		return fmt.Errorf("nomos: runtime: %w", err)
	}
	a.loopGuard = g
	return nil
}

func loopLimits(l *LoopLimits) loopguard.Limits {
	if l == nil {
		return loopguard.Limits{}
	}
	return loopguard.Limits{Calls: l.MaxCalls, WriteCalls: l.MaxWriteCalls, DistinctTools: l.MaxDistinctTools, IdenticalCalls: l.MaxIdenticalCalls}
}

func (a *App) provisionWindow() error {
	n := a.Runtime.RateLimitPerMinute
	if n == 0 {
		return nil
	}
	if n < 0 {
		return fmt.Errorf("nomos: runtime: rate_limit_per_minute must be positive, got %d", n)
	}
	key := configKey("rate_limit_per_minute", n)
	a.track(key)
	w, err := loadPooled(key, func() (*ratelimit.Window, func() error, error) {
		w, err := ratelimit.NewWindow(n, 0)
		return w, nil, err
	})
	if err != nil {
		return fmt.Errorf("nomos: runtime: %w", err)
	}
	a.window = w
	return nil
}

// allowRequest applies the transport guard to an authenticated principal.
func (a *App) allowRequest(principal string) bool {
	return a.window == nil || a.window.Allow(principal, time.Now())
}
