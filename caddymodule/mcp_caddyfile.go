package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-nomos/nomos/internal/pins"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("nomos_mcp", parseMCPHandler)
	httpcaddyfile.RegisterDirectiveOrder("nomos_mcp", httpcaddyfile.Before, "reverse_proxy")
}

func parseMCPHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(MCPHandler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile parses:
//
//	nomos_mcp [<upstream>...] {
//		policy <name>
//		upstreams <name>...
//		builtins
//		prefix <upstream> <prefix>
//		include <glob>...
//		exclude <glob>...
//		max_body_bytes <n>
//		allowed_origins <origin>...
//		allowed_hosts <glob>...
//		session_ttl <duration>
//		max_sessions_per_principal <n>
//		initialize_per_minute <n>
//		anonymous <principal> [<agent>]
//		principal_from <placeholder>
//		require_agent true|false
//	}
func (h *MCPHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	h.Upstreams = append(h.Upstreams, d.RemainingArgs()...)
	for d.NextBlock(0) {
		if err := h.unmarshalOption(d); err != nil {
			return err
		}
	}
	if len(h.Upstreams) == 0 && !h.Builtins {
		return d.Err("nomos_mcp needs at least one upstream, or builtins")
	}
	return nil
}

func (h *MCPHandler) unmarshalOption(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "policy":
		return setOnce(d, &h.Policy)
	case "upstreams":
		return appendArgs(d, &h.Upstreams)
	case "builtins":
		return setFlag(d, &h.Builtins)
	case "prefix":
		args := d.RemainingArgs()
		if len(args) != 2 {
			return d.Err("usage: prefix <upstream> <prefix>")
		}
		if h.Prefixes == nil {
			h.Prefixes = map[string]string{}
		}
		if _, dup := h.Prefixes[args[0]]; dup {
			return d.Errf("prefix for %q already set", args[0])
		}
		h.Prefixes[args[0]] = args[1]
		return nil
	case "include":
		return appendArgs(d, &h.Include)
	case "exclude":
		return appendArgs(d, &h.Exclude)
	case "max_body_bytes":
		return setInt(d, &h.MaxBodyBytes)
	default:
		if known, err := h.MCPEndpointConfig.unmarshalOption(d); known {
			return err
		}
		return h.RouteAuth.unmarshalOption(d)
	}
}

// unmarshalUpstream parses an upstream block of the nomos app:
//
//	upstream <name> {
//		command <path> [<arg>...]
//		env <name> <value>
//		env_allowlist <name>...
//		workdir <dir>
//		url <url>
//		transport stdio|streamable_http|sse
//		allowed_hosts <host>...
//		header <name> <value>
//		trusted_ca <pem>
//		client_cert <pem> <key>
//		allow_missing_tool_schemas
//		breaker disabled | breaker { failure_threshold <n>; failure_window <dur>; open_timeout <dur> }
//		timeouts { initialize <dur>; list <dur>; call <dur> }
//		pin off|warn|enforce
//	}
func (a *App) unmarshalUpstream(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	name := d.Val()
	if _, dup := a.Upstreams[name]; dup {
		return d.Errf("upstream %q already defined", name)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	c := new(UpstreamConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if err := unmarshalUpstreamOption(d, c); err != nil {
			return err
		}
	}
	if a.Upstreams == nil {
		a.Upstreams = map[string]*UpstreamConfig{}
	}
	a.Upstreams[name] = c
	return nil
}

func unmarshalUpstreamOption(d *caddyfile.Dispenser, c *UpstreamConfig) error {
	switch d.Val() {
	case "command":
		if c.Command != "" {
			return d.Err("command already set")
		}
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		c.Command, c.Args = args[0], args[1:]
		return nil
	case "env":
		return setPair(d, &c.Env)
	case "env_allowlist":
		return appendArgs(d, &c.EnvAllowlist)
	case "workdir":
		return setOnce(d, &c.Workdir)
	case "url":
		return setOnce(d, &c.URL)
	case "transport":
		return setOnce(d, &c.Transport) // validated with the upstream
	case "allowed_hosts":
		return appendArgs(d, &c.AllowedHosts)
	case "header":
		return setPair(d, &c.Headers)
	case "trusted_ca":
		return setOnce(d, &c.TrustedCA)
	case "client_cert":
		args := d.RemainingArgs()
		if len(args) != 2 || c.ClientCert != "" {
			return d.Err("usage: client_cert <cert.pem> <key.pem>, once")
		}
		c.ClientCert, c.ClientKey = args[0], args[1]
		return nil
	case "allow_missing_tool_schemas":
		return setFlag(d, &c.AllowMissingToolSchemas)
	case "breaker":
		return unmarshalBreaker(d, c)
	case "timeouts":
		return unmarshalTimeouts(d, c)
	case "pin":
		if err := setOnce(d, &c.Pin); err != nil {
			return err
		}
		if _, err := pins.ParseMode(c.Pin); err != nil || c.Pin == "" {
			return d.Err("usage: pin off|warn|enforce")
		}
		return nil
	default:
		return d.Errf("unrecognized upstream subdirective %q", d.Val())
	}
}

// setPair reads "<name> <value>" into a map, refusing a repeated name.
func setPair(d *caddyfile.Dispenser, m *map[string]string) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.Errf("usage: %s <name> <value>", d.Val())
	}
	if *m == nil {
		*m = map[string]string{}
	}
	if _, dup := (*m)[args[0]]; dup {
		return d.Errf("%q already set", args[0])
	}
	(*m)[args[0]] = args[1]
	return nil
}

func unmarshalBreaker(d *caddyfile.Dispenser, c *UpstreamConfig) error {
	if c.Breaker != nil {
		return d.Err("breaker already configured")
	}
	c.Breaker = new(BreakerConfig)
	return unmarshalBreakerBlock(d, c.Breaker, nil)
}

func unmarshalTimeouts(d *caddyfile.Dispenser, c *UpstreamConfig) error {
	if c.Timeouts != nil {
		return d.Err("timeouts already configured")
	}
	c.Timeouts = new(TimeoutsConfig)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "initialize":
			err = setDuration(d, &c.Timeouts.Initialize)
		case "list":
			err = setDuration(d, &c.Timeouts.List)
		case "call":
			err = setDuration(d, &c.Timeouts.Call)
		default:
			return d.Errf("unrecognized timeouts subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*MCPHandler)(nil)
