package service

import (
	"context"
	"fmt"
	"maps"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/loopguard"
	"github.com/caddy-nomos/nomos/internal/ratelimit"
	"github.com/caddy-nomos/nomos/policy"
)

// Reason codes of the pre-policy limits; they double as the audit result
// classifications.
const (
	ReasonRateLimitExceeded  = audit.ResultRateLimitExceeded
	ReasonLoopBreakerTripped = audit.ResultLoopBreakerTripped
)

// Front doors, as metrics label them.
const (
	FrontDoorHTTPAPI  = "http_api"
	FrontDoorMCPHTTP  = "mcp_http"
	FrontDoorMCPStdio = "mcp_stdio"
	FrontDoorGuard    = "guard"
)

// LimitInfo tells a denied caller which limit stopped it and when to try
// again.
type LimitInfo struct {
	// Kind is rate_limit or loop_breaker.
	Kind string `json:"kind"`
	// RuleID is the rate_limits rule, or the loop-breaker limit (calls,
	// write_calls, distinct_tools, identical_calls).
	RuleID string `json:"rule_id"`
	// Scope is the rule's scope, or session or agent.
	Scope string `json:"scope"`
	// Remaining is the whole tokens left in the bucket.
	Remaining *int64 `json:"remaining_tokens,omitempty"`
	// Budget is what the loop-breaker scope has left in its window.
	Budget map[string]int `json:"budget,omitempty"`
}

// Observation is one final decision, for metrics.
type Observation struct {
	FrontDoor  string
	Decision   string
	Reason     string
	ActionType string
}

type frontDoorKey struct{}

// WithFrontDoor tells the service which front door a call came through
// (nomos_guard, nomos mcp stdio); it wins over the transport's metadata.
func WithFrontDoor(ctx context.Context, door string) context.Context {
	return context.WithValue(ctx, frontDoorKey{}, door)
}

// doorOf is the front door of a call, for metrics and rejections: the one
// the caller named, else the transport's (downstream_transport in meta),
// else the HTTP API. Process, Authorize and Reject all ask it.
func doorOf(ctx context.Context, meta map[string]any) string {
	if d, ok := ctx.Value(frontDoorKey{}).(string); ok && d != "" {
		return d
	}
	switch meta["downstream_transport"] {
	case nil:
		return FrontDoorHTTPAPI
	case "stdio":
		return FrontDoorMCPStdio
	}
	return FrontDoorMCPHTTP
}

// limited runs the loop breakers, then the rate limits, before policy. A
// limit can only deny; it never turns a deny into an allow.
func (s *Service) limited(ctx context.Context, r *run) bool {
	return s.loopTripped(ctx, r) || s.rateLimited(ctx, r)
}

func (s *Service) loopTripped(ctx context.Context, r *run) bool {
	if s.cfg.LoopGuard == nil && s.cfg.SharedLoopGuard == nil {
		return false
	}
	v, err := s.checkLoopGuard(ctx, r)
	if err != nil {
		s.cfg.Logger.Error("loop breakers: shared state unavailable; action denied", "trace_id", r.a.TraceID, "error", err)
		r.d = policy.Decision{PolicyBundleHash: s.cfg.Policy.Hash()}
		stateDenied(r)
		return true
	}
	if !v.Tripped {
		return false
	}
	if s.cfg.ObserveLoopBreaker != nil {
		s.cfg.ObserveLoopBreaker(v.Scope, v.Limit)
	}
	msg := fmt.Sprintf("the %s reached its limit of %d %s per window; wait %s before calling again; remaining budget: %s",
		v.Scope, v.Max, strings.ReplaceAll(v.Limit, "_", " "), seconds(v.RetryAfter), budgetText(v.Budget))
	s.limitDeny(r, ReasonLoopBreakerTripped, msg, v.RetryAfter, &LimitInfo{Kind: "loop_breaker", RuleID: v.Limit, Scope: v.Scope, Budget: v.Budget})
	r.meta = mergeMeta(r.meta, map[string]any{"loop_breaker_scope": v.Scope, "loop_breaker_limit": v.Limit,
		"loop_breaker_max": v.Max, "loop_breaker_budget": v.Budget})
	return true
}

// checkLoopGuard runs the loop breakers, with the agent windows on the
// shared state when the replicas share them.
func (s *Service) checkLoopGuard(ctx context.Context, r *run) (loopguard.Verdict, error) {
	session, _ := r.meta["downstream_session_id"].(string)
	c := loopguard.Call{
		SessionID: session, Principal: r.a.Principal, Agent: r.a.Agent, ActionType: r.a.ActionType,
		Resource: r.a.Resource, ParamsHash: r.a.ParamsHash, RiskFlags: r.a.RiskFlags,
	}
	if s.cfg.SharedLoopGuard != nil {
		return s.cfg.SharedLoopGuard.Check(ctx, c, s.cfg.Clock())
	}
	return s.cfg.LoopGuard.Check(c, s.cfg.Clock()), nil
}

func (s *Service) rateLimited(ctx context.Context, r *run) bool {
	if s.cfg.RateLimits == nil && s.cfg.SharedRateLimits == nil {
		return false
	}
	v, err := s.checkRateLimits(ctx, r)
	if err != nil {
		s.cfg.Logger.Error("rate limits: shared state unavailable; action denied", "trace_id", r.a.TraceID, "error", err)
		r.d = policy.Decision{PolicyBundleHash: s.cfg.Policy.Hash()}
		stateDenied(r)
		return true
	}
	s.observeRateLimit(v)
	if v.Allowed {
		return false
	}
	h := v.Denied
	msg := fmt.Sprintf("retry after %s; rule %s (%s) has %d tokens left", seconds(v.RetryAfter), h.RuleID, h.Scope, h.Remaining)
	remaining := h.Remaining
	s.limitDeny(r, ReasonRateLimitExceeded, msg, v.RetryAfter, &LimitInfo{Kind: "rate_limit", RuleID: h.RuleID, Scope: h.Scope, Remaining: &remaining})
	r.meta = mergeMeta(r.meta, map[string]any{
		"rate_limit_rule_id": h.RuleID, "rate_limit_scope": h.Scope, "rate_limit_bucket_key": h.BucketKey,
		"rate_limit_remaining_tokens": h.Remaining, "rate_limit_refill_per_minute": h.RefillPerMinute,
	})
	return true
}

// checkRateLimits runs the rate_limits check, on the shared buckets when
// the replicas share them.
func (s *Service) checkRateLimits(ctx context.Context, r *run) (ratelimit.Verdict, error) {
	a := ratelimit.Action{Principal: r.a.Principal, ActionType: r.a.ActionType, Resource: r.a.Resource}
	if s.cfg.SharedRateLimits != nil {
		return s.cfg.SharedRateLimits.Check(ctx, a)
	}
	return s.cfg.RateLimits.Check(a, s.cfg.Clock()), nil
}

func (s *Service) observeRateLimit(v ratelimit.Verdict) {
	if s.cfg.ObserveRateLimit == nil {
		return
	}
	for _, h := range v.Hits {
		result := "allowed"
		if !h.Allowed {
			result = "exceeded"
		} else if !v.Allowed {
			result = "not_consumed"
		}
		s.cfg.ObserveRateLimit(result, h.RuleID, h.Scope)
	}
}

// limitDeny makes the run a retryable DENY that policy never saw.
func (s *Service) limitDeny(r *run, code, msg string, retry time.Duration, info *LimitInfo) {
	r.d = policy.Decision{Decision: policy.Deny, ReasonCode: code + ": " + msg, PolicyBundleHash: s.cfg.Policy.Hash()}
	r.class = code
	r.retryAfter = retryAfterSeconds(retry)
	r.limit = info
	r.meta = withMeta(r.meta, "retry_after_seconds", r.retryAfter)
}

// mergeMeta returns a copy of m with add's entries; the transport's map is
// never written to.
func mergeMeta(m, add map[string]any) map[string]any {
	out := make(map[string]any, len(m)+len(add))
	maps.Copy(out, m)
	maps.Copy(out, add)
	return out
}

// retryAfterSeconds rounds up, so a caller that waits that long finds
// the limit open.
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, int64(math.Ceil(d.Seconds())))
}

func seconds(d time.Duration) string {
	return fmt.Sprintf("%ds", retryAfterSeconds(d))
}

func budgetText(b map[string]int) string {
	keys := make([]string, 0, len(b))
	for k := range b {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, b[k])
	}
	return strings.Join(parts, ", ")
}

// observe reports a final decision to the metrics hook.
func (s *Service) observe(door, decision, reason, actionType string) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(Observation{FrontDoor: door, Decision: decision, Reason: reason, ActionType: actionType})
	}
}
