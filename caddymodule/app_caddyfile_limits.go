package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unmarshalRateLimits parses:
//
//	rate_limits {
//		evict_after_seconds <n>
//		max_buckets <n>
//		principal_action|principal_resource|global_tool <id> {
//			principal <name>
//			action_type <type>|*
//			resource <glob>
//			burst <n>
//			refill_per_minute <n>
//		}
//	}
func unmarshalRateLimits(d *caddyfile.Dispenser, c *RuntimeConfig) error {
	if c.RateLimits != nil {
		return d.Err("rate_limits already set")
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	rl := new(RateLimitsConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "evict_after_seconds":
			err = setInt(d, &rl.EvictAfterSeconds)
		case "max_buckets":
			err = setInt(d, &rl.MaxBuckets)
		case "principal_action":
			err = appendRateLimitRule(d, &rl.PrincipalAction)
		case "principal_resource":
			err = appendRateLimitRule(d, &rl.PrincipalResource)
		case "global_tool":
			err = appendRateLimitRule(d, &rl.GlobalTool)
		default:
			return d.Errf("unrecognized rate_limits subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	c.RateLimits = rl
	return nil
}

func appendRateLimitRule(d *caddyfile.Dispenser, dst *[]RateLimitRule) error {
	scope := d.Val()
	args := d.RemainingArgs()
	if len(args) != 1 {
		return d.Errf("usage: %s <id> { ... }", scope)
	}
	r := RateLimitRule{ID: args[0]}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "principal":
			err = setOnce(d, &r.Principal)
		case "action_type":
			err = setOnce(d, &r.ActionType)
		case "resource":
			err = setOnce(d, &r.Resource)
		case "burst":
			err = setInt(d, &r.Burst)
		case "refill_per_minute":
			err = setPositiveFloat(d, &r.RefillPerMinute)
		default:
			return d.Errf("unrecognized %s subdirective %q", scope, d.Val())
		}
		if err != nil {
			return err
		}
	}
	*dst = append(*dst, r)
	return nil
}

func setPositiveFloat(d *caddyfile.Dispenser, dst *float64) error {
	var s string
	if *dst != 0 {
		return d.Errf("%s already set", d.Val())
	}
	if err := setOnce(d, &s); err != nil {
		return err
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0) {
		return d.Errf("invalid positive number %q", s)
	}
	*dst = v
	return nil
}

// unmarshalLoopBreakers parses:
//
//	loop_breakers {
//		window <duration>
//		session|agent {
//			max_calls <n>
//			max_write_calls <n>
//			max_distinct_tools <n>
//			max_identical_calls <n>
//		}
//		read_only <glob>...
//		max_tracked <n>
//	}
func unmarshalLoopBreakers(d *caddyfile.Dispenser, c *RuntimeConfig) error {
	if c.LoopBreakers != nil {
		return d.Err("loop_breakers already set")
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	lb := new(LoopBreakersConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "window":
			err = setDuration(d, &lb.Window)
		case "session":
			err = unmarshalLoopLimits(d, &lb.Session)
		case "agent":
			err = unmarshalLoopLimits(d, &lb.Agent)
		case "read_only":
			err = appendArgs(d, &lb.ReadOnly)
		case "max_tracked":
			err = setInt(d, &lb.MaxTracked)
		default:
			return d.Errf("unrecognized loop_breakers subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	c.LoopBreakers = lb
	return nil
}

func unmarshalLoopLimits(d *caddyfile.Dispenser, dst **LoopLimits) error {
	if *dst != nil {
		return d.Errf("%s already set", d.Val())
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	l := new(LoopLimits)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "max_calls":
			err = setInt(d, &l.MaxCalls)
		case "max_write_calls":
			err = setInt(d, &l.MaxWriteCalls)
		case "max_distinct_tools":
			err = setInt(d, &l.MaxDistinctTools)
		case "max_identical_calls":
			err = setInt(d, &l.MaxIdenticalCalls)
		default:
			return d.Errf("unrecognized loop_breakers limit %q (want max_calls, max_write_calls, max_distinct_tools or max_identical_calls)", d.Val())
		}
		if err != nil {
			return err
		}
	}
	*dst = l
	return nil
}
