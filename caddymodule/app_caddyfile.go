package caddymodule

import (
	"encoding/json"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("nomos", parseGlobalOption)
}

// parseGlobalOption parses the nomos global option. Repeated nomos blocks
// merge into one app; a setting given twice is an error.
//
//	nomos {
//		environment <name>
//		policy <name> {
//			bundle <path> [role <role>] [signature <path>]
//			verify_key <pem-file>
//		}
//		identity { ... }
//		audit { sink stdout | sink sqlite [<path>] | sink webhook <url> { ... } }
//		approvals { store sqlite|file [<path>] | store redis; ttl <dur>; approvers <p>...; single_use; allow_self_approval }
//		executor { workspace_root <dir>; sandbox_profile none|local|landlock|container; ... }
//		credential <id> <env_key> <value> [<ttl>]
//		redact <regexp>
//		state { redis { address <host:port> | url <url>; password {env.X}; ... }; advertise <url> }
//		runtime { stateless; deployment_mode <mode>; concurrency_limit <n>; ... }
//		upstream <name> { command <path> [<args>...] | url <url>; ...; pin off|warn|enforce }
//		pins { path <file> }
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		prev, ok := existing.(httpcaddyfile.App)
		if !ok {
			return nil, d.Errf("unexpected existing nomos value %T", existing)
		}
		if err := json.Unmarshal(prev.Value, app); err != nil {
			return nil, d.Errf("merging nomos blocks: %v", err)
		}
	}
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "nomos", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile fills the app from a nomos block.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		if err := a.unmarshalDirective(d); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) unmarshalDirective(d *caddyfile.Dispenser) error {
	switch d.Val() {
	case "environment":
		return setOnce(d, &a.Environment)
	case "policy":
		return a.unmarshalPolicy(d)
	case "identity":
		if a.Identity == nil {
			a.Identity = new(IdentityConfig)
		}
		return unmarshalIdentity(d, a.Identity)
	case "audit":
		if a.Audit == nil {
			a.Audit = new(AuditConfig)
		}
		return unmarshalAudit(d, a.Audit)
	case "approvals":
		if a.Approvals != nil {
			return d.Err("approvals already configured")
		}
		a.Approvals = new(ApprovalsConfig)
		return unmarshalApprovals(d, a.Approvals)
	case "executor":
		if a.Executor != nil {
			return d.Err("executor already configured")
		}
		a.Executor = new(ExecutorConfig)
		return unmarshalExecutor(d, a.Executor)
	case "credential":
		return a.unmarshalCredential(d)
	case "redact":
		return a.unmarshalRedact(d)
	case "upstream":
		return a.unmarshalUpstream(d)
	case "pins":
		if a.Pins != nil {
			return d.Err("pins already configured")
		}
		a.Pins = new(PinsConfig)
		return unmarshalPins(d, a.Pins)
	case "state":
		if a.State != nil {
			return d.Err("state already configured")
		}
		a.State = new(StateConfig)
		return unmarshalState(d, a.State)
	case "runtime":
		if a.Runtime == nil {
			a.Runtime = new(RuntimeConfig)
		}
		return unmarshalRuntime(d, a.Runtime)
	default:
		return d.Errf("unrecognized subdirective %q", d.Val())
	}
}

func (a *App) unmarshalPolicy(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	name := d.Val()
	if _, dup := a.Policies[name]; dup {
		return d.Errf("policy %q already defined", name)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	set := new(PolicySet)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "bundle":
			b, err := unmarshalBundle(d)
			if err != nil {
				return err
			}
			set.Bundles = append(set.Bundles, b)
		case "verify_key":
			if !d.NextArg() {
				return d.ArgErr()
			}
			set.VerifyKeys = append(set.VerifyKeys, d.Val())
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized policy subdirective %q", d.Val())
		}
	}
	if len(set.Bundles) == 0 {
		return d.Errf("policy %q needs at least one bundle", name)
	}
	if a.Policies == nil {
		a.Policies = map[string]*PolicySet{}
	}
	a.Policies[name] = set
	return nil
}

// unmarshalBundle parses: bundle <path> [role <role>] [signature <path>]
func unmarshalBundle(d *caddyfile.Dispenser) (BundleConfig, error) {
	var b BundleConfig
	if !d.NextArg() {
		return b, d.ArgErr()
	}
	b.Path = d.Val()
	for d.NextArg() {
		key := d.Val()
		if !d.NextArg() {
			return b, d.ArgErr()
		}
		switch key {
		case "role":
			if b.Role != "" {
				return b, d.Err("bundle role given twice")
			}
			b.Role = d.Val()
		case "signature":
			if b.Signature != "" {
				return b, d.Err("bundle signature given twice")
			}
			b.Signature = d.Val()
		default:
			return b, d.Errf("unrecognized bundle option %q (want role or signature)", key)
		}
	}
	return b, nil
}

func (a *App) unmarshalCredential(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 3 || len(args) > 4 {
		return d.Err("usage: credential <id> <env_key> <value> [<ttl>]")
	}
	s := SecretConfig{ID: args[0], EnvKey: args[1], Value: args[2]}
	if len(args) == 4 {
		ttl, err := caddy.ParseDuration(args[3])
		if err != nil {
			return d.Errf("credential ttl: %v", err)
		}
		s.TTL = caddy.Duration(ttl)
	}
	for _, c := range a.Credentials {
		if c.ID == s.ID {
			return d.Errf("credential %q already defined", s.ID)
		}
	}
	a.Credentials = append(a.Credentials, s)
	return nil
}

func (a *App) unmarshalRedact(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	if a.Redaction == nil {
		a.Redaction = new(RedactionConfig)
	}
	a.Redaction.Patterns = append(a.Redaction.Patterns, d.Val())
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// setOnce reads exactly one argument into an unset string.
func setOnce(d *caddyfile.Dispenser, dst *string) error {
	name := d.Val()
	if *dst != "" {
		return d.Errf("%s already set", name)
	}
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// setDuration reads exactly one duration into an unset field.
func setDuration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	var s string
	if *dst != 0 {
		return d.Errf("%s already set", d.Val())
	}
	if err := setOnce(d, &s); err != nil {
		return err
	}
	v, err := caddy.ParseDuration(s)
	if err != nil || v <= 0 {
		return d.Errf("invalid duration %q", s)
	}
	*dst = caddy.Duration(v)
	return nil
}

// setInt reads exactly one positive integer into an unset field.
func setInt[T int | int64](d *caddyfile.Dispenser, dst *T) error {
	var s string
	if *dst != 0 {
		return d.Errf("%s already set", d.Val())
	}
	if err := setOnce(d, &s); err != nil {
		return err
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 {
		return d.Errf("invalid positive integer %q", s)
	}
	*dst = T(v)
	return nil
}

// setFlag sets a boolean switch that takes no arguments.
func setFlag(d *caddyfile.Dispenser, dst *bool) error {
	if *dst {
		return d.Errf("%s already set", d.Val())
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	*dst = true
	return nil
}

// appendArgs appends one or more arguments.
func appendArgs(d *caddyfile.Dispenser, dst *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*dst = append(*dst, args...)
	return nil
}
