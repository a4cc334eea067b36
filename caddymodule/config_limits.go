package caddymodule

import "github.com/caddyserver/caddy/v2"

// RateLimitsConfig is the seed's rate_limits block: token buckets checked
// after normalization and before policy, in every front door. Every rule
// that matches an action must have a token, or none is taken and the
// action is denied as RATE_LIMIT_EXCEEDED.
type RateLimitsConfig struct {
	// EvictAfterSeconds forgets a bucket idle this long; it must be at
	// least the time the slowest rule takes to refill its burst.
	// Default: 3600.
	EvictAfterSeconds int `json:"evict_after_seconds,omitempty"`
	// MaxBuckets bounds the buckets kept in memory. Default: 100000.
	MaxBuckets int `json:"max_buckets,omitempty"`
	// PrincipalAction rules keep one bucket per (principal, action_type).
	// Default: none.
	PrincipalAction []RateLimitRule `json:"principal_action,omitempty"`
	// PrincipalResource rules keep one bucket per (principal, normalized
	// resource). Default: none.
	PrincipalResource []RateLimitRule `json:"principal_resource,omitempty"`
	// GlobalTool rules keep one bucket per action_type shared by every
	// caller. Default: none.
	GlobalTool []RateLimitRule `json:"global_tool,omitempty"`
}

// RateLimitRule is one token bucket rule.
type RateLimitRule struct {
	// ID names the rule in denials, audit and metrics; unique.
	// Default: none (required).
	ID string `json:"id"`
	// Principal limits the rule to one principal ("*" is any).
	// Default: any.
	Principal string `json:"principal,omitempty"`
	// ActionType is an exact action type or "*"; required for
	// principal_action and global_tool. Default: "*".
	ActionType string `json:"action_type,omitempty"`
	// Resource is a glob over the normalized resource, as in policy rules;
	// required for principal_resource. Default: any.
	Resource string `json:"resource,omitempty"`
	// Burst is the bucket capacity; a new bucket starts full.
	// Default: none (required).
	Burst int `json:"burst"`
	// RefillPerMinute is the continuous refill rate (fractions allowed).
	// Default: none (required).
	RefillPerMinute float64 `json:"refill_per_minute"`
}

// LoopBreakersConfig caps calls per window for each MCP session and each
// (principal, agent). A call over a cap is denied as LOOP_BREAKER_TRIPPED
// with how long to wait and the budget left.
type LoopBreakersConfig struct {
	// Window is the counting window. Default: 1m.
	Window caddy.Duration `json:"window,omitempty"`
	// Session caps each MCP session. Default: none.
	Session *LoopLimits `json:"session,omitempty"`
	// Agent caps each (principal, agent) across sessions and front doors.
	// Default: none.
	Agent *LoopLimits `json:"agent,omitempty"`
	// ReadOnly are resource globs (e.g. mcp://github/get_*) never counted
	// as write-class calls. Default: none (every MCP tool call and every
	// built-in action with a side effect is write-class).
	ReadOnly []string `json:"read_only,omitempty"`
	// MaxTracked bounds the sessions and agents tracked. Default: 10000.
	MaxTracked int `json:"max_tracked,omitempty"`
}

// LoopLimits are the caps of one scope per window; 0 leaves one uncapped.
type LoopLimits struct {
	// MaxCalls caps all calls. Default: 0.
	MaxCalls int `json:"max_calls,omitempty"`
	// MaxWriteCalls caps write-class calls. Default: 0.
	MaxWriteCalls int `json:"max_write_calls,omitempty"`
	// MaxDistinctTools caps the different tools used. Default: 0.
	MaxDistinctTools int `json:"max_distinct_tools,omitempty"`
	// MaxIdenticalCalls caps repeats of one tool with the same arguments.
	// Default: 0.
	MaxIdenticalCalls int `json:"max_identical_calls,omitempty"`
}
