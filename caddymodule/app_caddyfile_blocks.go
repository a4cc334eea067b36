package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-nomos/nomos/audit"
)

// unmarshalIdentity parses:
//
//	identity {
//		api_key <key> <principal>
//		api_keys_file <path>
//		agent_secret <agent> <secret>
//		legacy_body_signatures
//		require_timestamp
//		max_clock_skew <duration>
//		replay_cache_size <n>
//		jwt { issuer <iss>; audience <aud>...; principal_claim <claim>; key <pem>; jwks_url <url>; jwks_refresh <dur> }
//		mtls { mode spiffe|subject; trust_domain <domain>; require; trust_caddy_verification }
//		trusted_headers { principal <header>; agent <header> }
//	}
func unmarshalIdentity(d *caddyfile.Dispenser, c *IdentityConfig) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "api_key":
			var args []string
			if args = d.RemainingArgs(); len(args) != 2 {
				return d.Err("usage: api_key <key> <principal>")
			}
			c.APIKeys = append(c.APIKeys, APIKeyConfig{Key: args[0], Principal: args[1]})
		case "api_keys_file":
			err = setOnce(d, &c.APIKeysFile)
		case "agent_secret":
			var args []string
			if args = d.RemainingArgs(); len(args) != 2 {
				return d.Err("usage: agent_secret <agent> <secret>")
			}
			c.AgentSecrets = append(c.AgentSecrets, AgentSecretConfig{Agent: args[0], Secret: args[1]})
		case "legacy_body_signatures":
			err = setFlag(d, &c.LegacyBodySignatures)
		case "require_timestamp":
			err = setFlag(d, &c.RequireTimestamp)
		case "replay_cache_size":
			err = setInt(d, &c.ReplayCacheSize)
		case "max_clock_skew":
			err = setDuration(d, &c.MaxClockSkew)
		case "jwt":
			if c.JWT != nil {
				return d.Err("jwt already configured")
			}
			c.JWT = new(JWTConfig)
			err = unmarshalJWT(d, c.JWT)
		case "mtls":
			if c.MTLS != nil {
				return d.Err("mtls already configured")
			}
			c.MTLS = new(MTLSConfig)
			err = unmarshalMTLS(d, c.MTLS)
		case "trusted_headers":
			if c.TrustedHeaders != nil {
				return d.Err("trusted_headers already configured")
			}
			c.TrustedHeaders = new(TrustedHeadersConfig)
			err = unmarshalTrustedHeaders(d, c.TrustedHeaders)
		default:
			return d.Errf("unrecognized identity subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func unmarshalJWT(d *caddyfile.Dispenser, c *JWTConfig) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "issuer":
			err = setOnce(d, &c.Issuer)
		case "audience":
			err = appendArgs(d, &c.Audiences)
		case "principal_claim":
			err = setOnce(d, &c.PrincipalClaim)
		case "key":
			err = appendArgs(d, &c.Keys)
		case "jwks_url":
			err = setOnce(d, &c.JWKSURL)
		case "jwks_refresh":
			err = setDuration(d, &c.JWKSRefresh)
		default:
			return d.Errf("unrecognized jwt subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if c.Issuer == "" || len(c.Audiences) == 0 || (len(c.Keys) == 0 && c.JWKSURL == "") {
		return d.Err("jwt needs issuer, audience and a key or jwks_url")
	}
	return nil
}

func unmarshalMTLS(d *caddyfile.Dispenser, c *MTLSConfig) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "mode":
			err = setOnce(d, &c.Mode)
			if err == nil && c.Mode != "spiffe" && c.Mode != "subject" {
				return d.Errf("mtls mode must be spiffe or subject, got %q", c.Mode)
			}
		case "trust_domain":
			err = setOnce(d, &c.TrustDomain)
		case "require":
			err = setFlag(d, &c.Require)
		case "trust_caddy_verification":
			err = setFlag(d, &c.TrustCaddyVerification)
		default:
			return d.Errf("unrecognized mtls subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func unmarshalTrustedHeaders(d *caddyfile.Dispenser, c *TrustedHeadersConfig) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "principal":
			err = setOnce(d, &c.Principal)
		case "agent":
			err = setOnce(d, &c.Agent)
		default:
			return d.Errf("unrecognized trusted_headers subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalAudit parses:
//
//	audit {
//		sink stdout
//		sink sqlite [<path>] { synchronous full|normal }
//		sink webhook <url> { outbox <path>; header <name> <value>; batch_size <n>; flush_interval <dur> }
//		checkpoint hmac-sha256|ed25519 { key <value> | key_file <path> }
//	}
func unmarshalAudit(d *caddyfile.Dispenser, c *AuditConfig) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "sink":
			s, err := unmarshalSink(d)
			if err != nil {
				return err
			}
			c.Sinks = append(c.Sinks, s)
		case "checkpoint":
			if c.Checkpoint != nil {
				return d.Err("checkpoint already configured")
			}
			c.Checkpoint = new(CheckpointConfig)
			if err := unmarshalCheckpoint(d, c.Checkpoint); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized audit subdirective %q", d.Val())
		}
	}
	return nil
}

func unmarshalCheckpoint(d *caddyfile.Dispenser, c *CheckpointConfig) error {
	if !d.Args(&c.Algorithm) {
		return d.Err("usage: checkpoint hmac-sha256|ed25519 { key <value> | key_file <path> }")
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "key":
			err = setOnce(d, &c.Key)
		case "key_file":
			err = setOnce(d, &c.KeyFile)
		default:
			err = d.Errf("unrecognized checkpoint subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if (c.Key == "") == (c.KeyFile == "") {
		return d.Err("checkpoint needs exactly one of key and key_file")
	}
	return nil
}

func unmarshalSink(d *caddyfile.Dispenser) (SinkConfig, error) {
	var s SinkConfig
	if !d.NextArg() {
		return s, d.ArgErr()
	}
	s.Type = d.Val()
	switch s.Type {
	case "stdout":
	case "sqlite":
		d.Args(&s.Path)
	case "webhook":
		if !d.NextArg() {
			return s, d.Err("usage: sink webhook <url>")
		}
		s.URL = d.Val()
	default:
		return s, d.Errf("unknown sink type %q (want stdout, sqlite or webhook)", s.Type)
	}
	if d.NextArg() {
		return s, d.ArgErr()
	}
	switch s.Type {
	case "webhook":
		return s, unmarshalWebhook(d, &s)
	case "sqlite":
		return s, unmarshalSQLiteSink(d, &s)
	}
	if d.NextBlock(d.Nesting()) {
		return s, d.Errf("sink %s takes no block", s.Type)
	}
	return s, nil
}

func unmarshalSQLiteSink(d *caddyfile.Dispenser, s *SinkConfig) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "synchronous":
			if err := setOnce(d, &s.Synchronous); err != nil {
				return err
			}
			if s.Synchronous != audit.SyncFull && s.Synchronous != audit.SyncNormal {
				return d.Errf("synchronous %q: want %s or %s", s.Synchronous, audit.SyncFull, audit.SyncNormal)
			}
		default:
			return d.Errf("unrecognized sqlite sink subdirective %q", d.Val())
		}
	}
	return nil
}

func unmarshalWebhook(d *caddyfile.Dispenser, s *SinkConfig) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "outbox":
			err = setOnce(d, &s.Outbox)
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Err("usage: header <name> <value>")
			}
			if s.Headers == nil {
				s.Headers = map[string]string{}
			}
			s.Headers[args[0]] = args[1]
		case "batch_size":
			err = setInt(d, &s.BatchSize)
		case "flush_interval":
			err = setDuration(d, &s.FlushInterval)
		default:
			return d.Errf("unrecognized webhook subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalApprovals parses:
//
//	approvals { store sqlite|file [<path>]; ttl <dur>; approvers <principal>...; single_use; allow_self_approval }
func unmarshalApprovals(d *caddyfile.Dispenser, c *ApprovalsConfig) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "store":
			if c.Store != "" {
				return d.Err("store already set")
			}
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 || (args[0] != "sqlite" && args[0] != "file" && args[0] != "redis") ||
				args[0] == "redis" && len(args) == 2 {
				return d.Err("usage: store sqlite|file [<path>] | store redis")
			}
			c.Store = args[0]
			if len(args) == 2 {
				c.Path = args[1]
			}
		case "ttl":
			err = setDuration(d, &c.TTL)
		case "approvers":
			err = appendArgs(d, &c.Approvers)
		case "single_use":
			err = setFlag(d, &c.SingleUse)
		case "allow_self_approval":
			err = setFlag(d, &c.AllowSelfApproval)
		default:
			return d.Errf("unrecognized approvals subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalExecutor parses the executor block; see ExecutorConfig.
func unmarshalExecutor(d *caddyfile.Dispenser, c *ExecutorConfig) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "workspace_root":
			err = setOnce(d, &c.WorkspaceRoot)
		case "sandbox_profile":
			err = setOnce(d, &c.SandboxProfile) // the executor validates it
		case "sandbox_read_paths":
			err = appendArgs(d, &c.SandboxReadPaths)
		case "max_output_bytes":
			err = setInt(d, &c.MaxOutputBytes)
		case "max_output_lines":
			err = setInt(d, &c.MaxOutputLines)
		case "exec_timeout":
			err = setDuration(d, &c.ExecTimeout)
		case "http_timeout":
			err = setDuration(d, &c.HTTPTimeout)
		case "env_allowlist":
			err = appendArgs(d, &c.EnvAllowlist)
		case "allow_private_cidrs":
			err = appendArgs(d, &c.AllowPrivateCIDRs)
		case "trusted_ca":
			err = setOnce(d, &c.TrustedCA)
		default:
			return d.Errf("unrecognized executor subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalRuntime parses:
//
//	runtime {
//		stateless
//		deployment_mode ci|k8s|remote_dev|unmanaged
//		concurrency_limit <n>
//		strong_guarantee
//		evidence runtime_isolation|workload_identity|durable_audit...
//		rate_limit <events> <interval> [burst <n>]
//		rate_limit_per_minute <n>
//		rate_limits { ... }
//		loop_breakers { ... }
//	}
func unmarshalRuntime(d *caddyfile.Dispenser, c *RuntimeConfig) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "stateless":
			err = setFlag(d, &c.Stateless)
		case "deployment_mode":
			err = setOnce(d, &c.DeploymentMode)
		case "concurrency_limit":
			err = setInt(d, &c.ConcurrencyLimit)
		case "strong_guarantee":
			err = setFlag(d, &c.StrongGuarantee)
		case "evidence":
			err = unmarshalEvidence(d, c)
		case "rate_limit":
			err = unmarshalRateLimit(d, c)
		case "rate_limit_per_minute":
			err = setInt(d, &c.RateLimitPerMinute)
		case "rate_limits":
			err = unmarshalRateLimits(d, c)
		case "loop_breakers":
			err = unmarshalLoopBreakers(d, c)
		default:
			return d.Errf("unrecognized runtime subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func unmarshalEvidence(d *caddyfile.Dispenser, c *RuntimeConfig) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	if c.Evidence == nil {
		c.Evidence = new(EvidenceConfig)
	}
	for _, a := range args {
		switch a {
		case "runtime_isolation":
			c.Evidence.RuntimeIsolationVerified = true
		case "workload_identity":
			c.Evidence.WorkloadIdentityVerified = true
		case "durable_audit":
			c.Evidence.DurableAuditVerified = true
		default:
			return d.Errf("unknown evidence %q (want runtime_isolation, workload_identity or durable_audit)", a)
		}
	}
	return nil
}

// unmarshalRateLimit parses: rate_limit <events> <interval> [burst <n>]
func unmarshalRateLimit(d *caddyfile.Dispenser, c *RuntimeConfig) error {
	if c.RateLimit != nil {
		return d.Err("rate_limit already set")
	}
	args := d.RemainingArgs()
	if len(args) != 2 && !(len(args) == 4 && args[2] == "burst") {
		return d.Err("usage: rate_limit <events> <interval> [burst <n>]")
	}
	rl := new(RateLimitConfig)
	var err error
	if rl.Events, err = strconv.Atoi(args[0]); err != nil || rl.Events <= 0 {
		return d.Errf("rate_limit events must be a positive integer, got %q", args[0])
	}
	iv, err := caddy.ParseDuration(args[1])
	if err != nil || iv <= 0 {
		return d.Errf("rate_limit interval must be a positive duration, got %q", args[1])
	}
	rl.Interval = caddy.Duration(iv)
	if len(args) == 4 {
		if rl.Burst, err = strconv.Atoi(args[3]); err != nil || rl.Burst <= 0 {
			return d.Errf("rate_limit burst must be a positive integer, got %q", args[3])
		}
	}
	c.RateLimit = rl
	return nil
}

// unmarshalPins parses the pin store block: pins { path <file> }.
func unmarshalPins(d *caddyfile.Dispenser, c *PinsConfig) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "path":
			if err := setOnce(d, &c.Path); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized pins subdirective %q", d.Val())
		}
	}
	return nil
}
