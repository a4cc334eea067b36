package caddymodule

import "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

// unmarshalBreakerBlock parses the breaker settings shared by MCP upstreams
// and nomos_guard, so both spell them alike:
//
//	breaker disabled
//	breaker {
//		failure_threshold <n>
//		failure_window <duration>
//		open_timeout <duration>
//	}
//
// extra parses a setting of the caller's own and reports whether it knew
// the name; it may be nil.
func unmarshalBreakerBlock(d *caddyfile.Dispenser, b *BreakerConfig, extra func(*caddyfile.Dispenser) (bool, error)) error {
	if d.NextArg() {
		if d.Val() != "disabled" || d.NextArg() {
			return d.Err("usage: breaker disabled, or a breaker { } block")
		}
		b.Disabled = true
		return nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := unmarshalBreakerSetting(d, b, extra); err != nil {
			return err
		}
	}
	return nil
}

func unmarshalBreakerSetting(d *caddyfile.Dispenser, b *BreakerConfig, extra func(*caddyfile.Dispenser) (bool, error)) error {
	switch d.Val() {
	case "failure_threshold":
		return setInt(d, &b.FailureThreshold)
	case "failure_window":
		return setDuration(d, &b.FailureWindow)
	case "open_timeout":
		return setDuration(d, &b.OpenTimeout)
	}
	if extra != nil {
		if known, err := extra(d); known || err != nil {
			return err
		}
	}
	return d.Errf("unrecognized breaker subdirective %q", d.Val())
}
