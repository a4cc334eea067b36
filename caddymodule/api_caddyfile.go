package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("nomos_api", parseAPIHandler)
	httpcaddyfile.RegisterDirectiveOrder("nomos_api", httpcaddyfile.Before, "reverse_proxy")
}

func parseAPIHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(APIHandler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile parses:
//
//	nomos_api {
//		policy <name>
//		anonymous <principal> [<agent>]
//		principal_from <placeholder>
//		require_agent true|false
//	}
func (h *APIHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if d.Val() == "policy" {
			if err := setOnce(d, &h.Policy); err != nil {
				return err
			}
			continue
		}
		if err := h.RouteAuth.unmarshalOption(d); err != nil {
			return err
		}
	}
	return nil
}

// unmarshalOption parses one route identity option shared by handlers.
func (ra *RouteAuth) unmarshalOption(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "anonymous":
		if ra.Anonymous != "" {
			return d.Err("anonymous already set")
		}
		args := d.RemainingArgs()
		if len(args) < 1 || len(args) > 2 {
			return d.Err("usage: anonymous <principal> [<agent>]")
		}
		ra.Anonymous = args[0]
		if len(args) == 2 {
			ra.AnonymousAgent = args[1]
		}
		return nil
	case "principal_from":
		return setOnce(d, &ra.PrincipalFrom)
	case "require_agent":
		var s string
		if ra.RequireAgent != nil {
			return d.Err("require_agent already set")
		}
		if err := setOnce(d, &s); err != nil {
			return err
		}
		v, err := strconv.ParseBool(s)
		if err != nil {
			return d.Errf("require_agent must be true or false, got %q", s)
		}
		ra.RequireAgent = &v
		return nil
	default:
		return d.Errf("unrecognized subdirective %q", d.Val())
	}
}

// Interface guards
var _ caddyfile.Unmarshaler = (*APIHandler)(nil)
