// Package ratelimit owns the pipeline's quotas: the service-stage token
// buckets of the rate_limits rules (principal_action, principal_resource,
// global_tool), checked after normalization and before policy, and the
// per-principal fixed window of the legacy transport guard
// (rate_limit_per_minute), and a plain per-key bucket (Limiter) for
// transport pacing. State lives in bounded LRUs whose idle entries
// are pruned on use, so no goroutine is ever started.
package ratelimit
