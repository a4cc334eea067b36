package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/caddy-nomos/nomos/policy"
)

// Scopes: which part of an action names its bucket.
const (
	// ScopePrincipalAction keeps one bucket per (principal, action_type).
	ScopePrincipalAction = "principal_action"
	// ScopePrincipalResource keeps one bucket per (principal, normalized
	// resource).
	ScopePrincipalResource = "principal_resource"
	// ScopeGlobalTool keeps one bucket per action_type, shared by everyone.
	ScopeGlobalTool = "global_tool"
)

// Defaults of RulesConfig.
const (
	DefaultEvictAfter = time.Hour
	DefaultMaxBuckets = 100000
)

// Rule is one quota. A rule matches an action when its principal filter,
// action type and resource glob all do; every matching rule's bucket must
// hold a token for the action to pass.
type Rule struct {
	// ID names the rule in audit, metrics and denials. Unique, required.
	ID string
	// Scope is principal_action, principal_resource or global_tool.
	Scope string
	// Principal restricts the rule to one principal; "" or "*" is any.
	Principal string
	// ActionType is an exact action type or "*" ("" is "*", except where
	// the scope requires it).
	ActionType string
	// Resource is a glob over the normalized resource; "" matches any
	// (required for principal_resource).
	Resource string
	// Burst is the bucket capacity; a new bucket starts full.
	Burst int
	// RefillPerMinute is the continuous refill rate.
	RefillPerMinute float64
}

// RulesConfig is the whole rule set.
type RulesConfig struct {
	Rules []Rule
	// EvictAfter forgets a bucket idle this long. It must be at least the
	// time the slowest rule takes to refill a whole burst, so forgetting a
	// bucket never grants more than keeping it would. Default: 1h.
	EvictAfter time.Duration
	// MaxBuckets bounds the buckets kept; the least recently used go
	// first. Default: 100000.
	MaxBuckets int
}

type compiledRule struct {
	Rule
	glob *policy.Glob
	// microPerMinute is the refill rate in micro-tokens per minute.
	microPerMinute uint64
	capacity       int64
	// fullAfter refills an empty bucket completely.
	fullAfter time.Duration
}

// compile validates the rules and sorts them by id, so every check visits
// buckets in the same order.
func compile(cfg *RulesConfig) ([]compiledRule, error) {
	seen := map[string]bool{}
	out := make([]compiledRule, 0, len(cfg.Rules))
	var errs []error
	for _, r := range cfg.Rules {
		c, err := compileRule(r)
		if err == nil && seen[r.ID] {
			err = fmt.Errorf("duplicate rule id")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("rate_limits: rule %q: %w", r.ID, err))
			continue
		}
		seen[r.ID] = true
		out = append(out, c)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, checkEviction(cfg, out)
}

func compileRule(r Rule) (compiledRule, error) {
	c := compiledRule{Rule: r}
	if err := checkRule(r); err != nil {
		return c, err
	}
	if c.ActionType == "" {
		c.ActionType = "*"
	}
	if r.Resource != "" {
		g, err := policy.CompileGlob(r.Resource)
		if err != nil {
			return c, fmt.Errorf("resource: %w", err)
		}
		c.glob = g
	}
	c.capacity = int64(r.Burst) * micro
	c.microPerMinute = uint64(r.RefillPerMinute * micro)
	c.fullAfter = time.Duration(math.Ceil(float64(c.capacity) / float64(c.microPerMinute) * float64(time.Minute)))
	return c, nil
}

func checkRule(r Rule) error {
	switch {
	case !validID(r.ID):
		return fmt.Errorf("id must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")
	case r.Burst <= 0 || r.Burst > 1_000_000:
		return fmt.Errorf("burst must be between 1 and 1000000, got %d", r.Burst)
	case !(r.RefillPerMinute >= 1e-6) || r.RefillPerMinute > 1e9:
		return fmt.Errorf("refill_per_minute must be between 0.000001 and 1e9, got %v", r.RefillPerMinute)
	}
	switch r.Scope {
	case ScopePrincipalAction, ScopeGlobalTool:
		if r.ActionType == "" {
			return fmt.Errorf("%s needs an action_type (exact or *)", r.Scope)
		}
	case ScopePrincipalResource:
		if r.Resource == "" {
			return fmt.Errorf("principal_resource needs a resource glob")
		}
	default:
		return fmt.Errorf("unknown scope %q (want principal_action, principal_resource or global_tool)", r.Scope)
	}
	return nil
}

func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// checkEviction refuses an evict_after shorter than a full refill: a
// forgotten bucket comes back full, which must never be more than it would
// have held.
func checkEviction(cfg *RulesConfig, rules []compiledRule) error {
	for _, r := range rules {
		full := time.Duration(float64(r.Burst) / r.RefillPerMinute * float64(time.Minute))
		if cfg.EvictAfter < full {
			return fmt.Errorf("rate_limits: evict_after_seconds %d is shorter than rule %q takes to refill its burst (%ds): raise it, or a forgotten bucket would come back full too early",
				int64(cfg.EvictAfter/time.Second), r.ID, int64(math.Ceil(full.Seconds())))
		}
	}
	return nil
}

// matches reports whether the rule applies to the action.
func (r *compiledRule) matches(a Action) bool {
	if r.Principal != "" && r.Principal != "*" && r.Principal != a.Principal {
		return false
	}
	if r.ActionType != "*" && r.ActionType != a.ActionType {
		return false
	}
	return r.glob == nil || r.glob.Match(a.Resource)
}

// bucketKey names the rule's bucket for the action. Keys are
// length-prefixed per part, so no principal or resource can forge
// another's key.
func (r *compiledRule) bucketKey(a Action) string {
	switch r.Scope {
	case ScopePrincipalAction:
		return joinKey(r.Scope, r.ID, a.Principal, a.ActionType)
	case ScopePrincipalResource:
		return joinKey(r.Scope, r.ID, a.Principal, a.Resource)
	}
	return joinKey(r.Scope, r.ID, a.ActionType)
}

func joinKey(parts ...string) string {
	n := 0
	for _, p := range parts {
		n += len(p) + 1
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, '|')
		}
		if i >= 2 {
			b = fmt.Appendf(b, "%d:", len(p))
		}
		b = append(b, p...)
	}
	return string(b)
}
