package approvals

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkApprovalLookup measures the lookup a retry presenting an
// approval makes (Get, then Use on the approved record; not single use,
// so every round finds it approved) on the Redis store over loopback
// against the sqlite store, in the same run. It reports both medians and
// what the shared store adds at p50 (target: <= 300 us).
func BenchmarkApprovalLookup(b *testing.B) {
	if redisAddr == "" {
		b.Skip("needs redis-server: skipped with -short")
	}
	lite, err := OpenSQLite(filepath.Join(b.TempDir(), "approvals.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer lite.Close()
	shared, err := openRedisForTest("bench:" + b.Name())
	if err != nil {
		b.Fatal(err)
	}
	defer shared.Close()
	ctx, now := context.Background(), time.Now()
	req := request()
	ids := map[Store]string{}
	for _, s := range []Store{lite, shared} {
		rec, _, err := s.CreateOrGetPending(ctx, req, time.Hour, now)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Decide(ctx, rec.ID, Approved, "reviewer", now); err != nil {
			b.Fatal(err)
		}
		ids[s] = rec.ID
	}
	lookup := func(s Store) time.Duration {
		start := time.Now()
		if _, err := s.Get(ctx, ids[s]); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Use(ctx, ids[s], req.ScopeKey, req.Principal, req.Agent, req.Environment, now); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	local, remote := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		local = append(local, lookup(lite))
		remote = append(remote, lookup(shared))
	}
	b.StopTimer()
	ls, rs := median(local), median(remote)
	b.ReportMetric(ls, "sqlite-p50-us")
	b.ReportMetric(rs, "redis-p50-us")
	b.ReportMetric(rs-ls, "added-p50-us")
}

func median(samples []time.Duration) float64 {
	slices.Sort(samples)
	return float64(samples[len(samples)/2]) / float64(time.Microsecond)
}
