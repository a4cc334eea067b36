package sharedstate

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/ratelimit"
	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
)

// p50 is the median of the samples, in microseconds.
func p50(samples []time.Duration) float64 {
	slices.Sort(samples)
	return float64(samples[len(samples)/2]) / float64(time.Microsecond)
}

// BenchmarkRateLimitCheck measures the shared rate-limit check (Take over
// the three buckets a decision checks, on a loopback Redis) against the
// in-process limiter doing the same three checks, in the same run. It
// reports both medians and what sharing adds at p50 (target: <= 300 us).
func BenchmarkRateLimitCheck(b *testing.B) {
	srv := redistest.Start(b)
	c := open(b, srv.Addr)
	local, err := ratelimit.New(ratelimit.Config{Events: 1 << 30, Interval: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	buckets := func(i int) []Bucket {
		p := fmt.Sprintf("p%d", i%64)
		return []Bucket{
			{Key: "principal_action|" + p + "|payments.refund", Burst: 1e9, RefillPerMinute: 1e9, Evict: time.Minute},
			{Key: "principal_resource|" + p + "|payments://shop/orders/1", Burst: 1e9, RefillPerMinute: 1e9, Evict: time.Minute},
			{Key: "global_tool|payments.refund", Burst: 1e9, RefillPerMinute: 1e9, Evict: time.Minute},
		}
	}
	shared, inproc := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bs := buckets(i)
		start := time.Now()
		for _, bk := range bs {
			local.Allow(bk.Key, start)
		}
		inproc = append(inproc, time.Since(start))
		start = time.Now()
		if v, err := c.Take(ctx, bs); err != nil || !v.Allowed {
			b.Fatalf("take: %+v %v", v, err)
		}
		shared = append(shared, time.Since(start))
	}
	b.StopTimer()
	ls, rs := p50(inproc), p50(shared)
	b.ReportMetric(ls, "local-p50-us")
	b.ReportMetric(rs, "redis-p50-us")
	b.ReportMetric(rs-ls, "added-p50-us")
}
