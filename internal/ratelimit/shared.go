package ratelimit

import (
	"context"
	"math"
	"time"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
)

// Shared checks the same rules as Rules, with the buckets on the shared
// Redis: every replica takes from one bucket per key, so N replicas allow
// the limit once, not N times. All of an action's buckets are checked and
// consumed (or none) in one atomic script, on the server's clock.
type Shared struct {
	rules *Rules
	c     *sharedstate.Client
}

// NewShared puts rules' buckets on c.
func NewShared(rules *Rules, c *sharedstate.Client) *Shared { return &Shared{rules: rules, c: c} }

// Check takes one token from every bucket of every rule matching a, or
// none when any is empty, like Rules.Check. An error (wrapping
// sharedstate.ErrUnavailable) means Redis could not answer: the caller
// denies.
func (s *Shared) Check(ctx context.Context, a Action) (Verdict, error) {
	matched := s.rules.matching(a)
	if len(matched) == 0 {
		return Verdict{Allowed: true}, nil
	}
	buckets := make([]sharedstate.Bucket, len(matched))
	for i, r := range matched {
		buckets[i] = sharedstate.Bucket{Key: r.bucketKey(a), Burst: float64(r.Burst),
			RefillPerMinute: r.RefillPerMinute, Evict: s.rules.evictAfter}
	}
	taken, err := s.c.Take(ctx, buckets)
	if err != nil {
		return Verdict{}, err
	}
	return sharedVerdict(matched, buckets, taken, s.rules.evictAfter), nil
}

// sharedVerdict turns the script's answer into the Verdict Rules.Check
// would give: a bucket is empty when it holds less than one token.
func sharedVerdict(matched []*compiledRule, buckets []sharedstate.Bucket, t sharedstate.Verdict, never time.Duration) Verdict {
	v := Verdict{Allowed: t.Allowed, Hits: make([]Hit, len(matched)), RetryAfter: t.RetryAfter}
	if v.RetryAfter < 0 {
		v.RetryAfter = never
	}
	for i, r := range matched {
		left := t.Remaining[i]
		v.Hits[i] = Hit{RuleID: r.ID, Scope: r.Scope, BucketKey: buckets[i].Key, RefillPerMinute: r.RefillPerMinute,
			Remaining: int64(math.Floor(left)), Allowed: t.Allowed || left >= 1}
	}
	if !v.Allowed {
		v.Denied = firstDenied(v.Hits)
	}
	return v
}
