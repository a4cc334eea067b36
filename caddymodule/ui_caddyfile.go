package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("nomos_ui", parseUIHandler)
	httpcaddyfile.RegisterDirectiveOrder("nomos_ui", httpcaddyfile.Before, "reverse_proxy")
}

func parseUIHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(UIHandler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile parses:
//
//	nomos_ui {
//		policy <name>
//		readers <principal>...
//		deciders <principal>...
//		principal_from <placeholder>
//	}
func (h *UIHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "policy":
			if err := setOnce(d, &h.Policy); err != nil {
				return err
			}
		case "principal_from":
			if err := setOnce(d, &h.PrincipalFrom); err != nil {
				return err
			}
		case "readers":
			if err := setList(d, &h.Readers); err != nil {
				return err
			}
		case "deciders":
			if err := setList(d, &h.Deciders); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized subdirective %q", d.Val())
		}
	}
	return nil
}

// setList fills a list option once from one or more arguments.
func setList(d *caddyfile.Dispenser, dst *[]string) error {
	name := d.Val()
	if len(*dst) > 0 {
		return d.Errf("%s already set", name)
	}
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.Errf("usage: %s <principal>...", name)
	}
	*dst = args
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*UIHandler)(nil)
