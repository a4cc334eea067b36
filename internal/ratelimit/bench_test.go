package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
)

// p50 is the median of the samples, in microseconds.
func p50(samples []time.Duration) float64 {
	slices.Sort(samples)
	return float64(samples[len(samples)/2]) / float64(time.Microsecond)
}

// BenchmarkRateLimitCheck measures the rate_limits check of one action
// matching the three kinds of rule (principal_action, principal_resource,
// global_tool): on buckets shared through a loopback Redis (one Take)
// against the in-process buckets, in the same run. It reports both
// medians and what sharing adds at p50 (target: <= 300 us).
func BenchmarkRateLimitCheck(b *testing.B) {
	srv := redistest.Start(b)
	rules, err := NewRules(RulesConfig{Rules: []Rule{
		{ID: "pa", Scope: ScopePrincipalAction, ActionType: "payments.refund", Burst: 1e6, RefillPerMinute: 1e6},
		{ID: "pr", Scope: ScopePrincipalResource, ActionType: "payments.refund", Resource: "payments://shop/**", Burst: 1e6, RefillPerMinute: 1e6},
		{ID: "gt", Scope: ScopeGlobalTool, ActionType: "payments.refund", Burst: 1e6, RefillPerMinute: 1e6},
	}})
	if err != nil {
		b.Fatal(err)
	}
	c, err := sharedstate.Open(sharedstate.Config{Address: srv.Addr, KeyPrefix: "bench:"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	shared, ctx := NewShared(rules, c), context.Background()
	local, remote := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a := Action{Principal: fmt.Sprintf("p%d", i%64), ActionType: "payments.refund", Resource: "payments://shop/orders/1"}
		start := time.Now()
		if v := rules.Check(a, start); !v.Allowed || len(v.Hits) != 3 {
			b.Fatalf("local: %+v", v)
		}
		local = append(local, time.Since(start))
		start = time.Now()
		if v, err := shared.Check(ctx, a); err != nil || !v.Allowed || len(v.Hits) != 3 {
			b.Fatalf("shared: %+v %v", v, err)
		}
		remote = append(remote, time.Since(start))
	}
	b.StopTimer()
	ls, rs := p50(local), p50(remote)
	b.ReportMetric(ls, "local-p50-us")
	b.ReportMetric(rs, "redis-p50-us")
	b.ReportMetric(rs-ls, "added-p50-us")
}
