package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("nomos_guard", parseGuardHandler)
	httpcaddyfile.RegisterDirectiveOrder("nomos_guard", httpcaddyfile.Before, "reverse_proxy")
}

func parseGuardHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(GuardHandler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile parses:
//
//	nomos_guard {
//		policy <name>
//		name <name>
//		action_type <type>
//		resource <template>
//		param <name> <template>
//		body_param <name> <dot.path>
//		param_headers <header>...
//		max_body_bytes <n>
//		breaker disabled | breaker {
//			failure_threshold <n>
//			failure_window <duration>
//			open_timeout <duration>
//			latency_threshold <duration>
//		}
//		mcp <server> [{
//			allowed_origins <origin>...
//			allowed_hosts <host-glob>...
//			session_ttl <duration>
//			max_sessions_per_principal <n>
//			initialize_per_minute <n>
//		}]
//		anonymous <principal> [<agent>]
//		principal_from <placeholder>
//		require_agent true|false
//	}
func (h *GuardHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if err := h.unmarshalOption(d); err != nil {
			return err
		}
	}
	return nil
}

func (h *GuardHandler) unmarshalOption(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "policy":
		return setOnce(d, &h.Policy)
	case "name":
		return setOnce(d, &h.Name)
	case "action_type":
		return setOnce(d, &h.ActionType)
	case "resource":
		return setOnce(d, &h.Resource)
	case "param":
		return setPair(d, &h.Params)
	case "body_param":
		return setPair(d, &h.BodyParams)
	case "param_headers":
		return appendArgs(d, &h.ParamHeaders)
	case "max_body_bytes":
		return setInt(d, &h.MaxBodyBytes)
	case "breaker":
		return h.unmarshalBreaker(d)
	case "mcp":
		return h.unmarshalMCP(d)
	default:
		return h.RouteAuth.unmarshalOption(d)
	}
}

func (h *GuardHandler) unmarshalMCP(d *caddyfile.Dispenser) error {
	if h.MCP != nil {
		return d.Err("mcp already configured")
	}
	h.MCP = new(GuardMCPConfig)
	if err := setOnce(d, &h.MCP.Server); err != nil {
		return err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := h.MCP.unmarshalOption(d); err != nil {
			return err
		}
	}
	return nil
}

func (c *GuardMCPConfig) unmarshalOption(d *caddyfile.Dispenser) error {
	if known, err := c.MCPEndpointConfig.unmarshalOption(d); known {
		return err
	}
	return d.Errf("unrecognized subdirective %q", d.Val())
}

func (h *GuardHandler) unmarshalBreaker(d *caddyfile.Dispenser) error {
	if h.Breaker != nil {
		return d.Err("breaker already configured")
	}
	h.Breaker = new(GuardBreakerConfig)
	return unmarshalBreakerBlock(d, &h.Breaker.BreakerConfig, func(d *caddyfile.Dispenser) (bool, error) {
		if d.Val() != "latency_threshold" {
			return false, nil
		}
		return true, setDuration(d, &h.Breaker.LatencyThreshold)
	})
}

// Interface guards
var _ caddyfile.Unmarshaler = (*GuardHandler)(nil)
