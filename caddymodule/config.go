package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
)

// PolicySet is a named, ordered list of bundles compiled into one engine.
type PolicySet struct {
	// Bundles load in order; rule ids must be unique across them.
	// Default: none (a policy set needs at least one bundle).
	Bundles []BundleConfig `json:"bundles,omitempty"`
	// VerifyKeys are PEM public keys (RSA or Ed25519). When set, every
	// bundle must carry a signature that one of them verifies. Default: none.
	VerifyKeys []string `json:"verify_keys,omitempty"`
}

// BundleConfig is one policy bundle file.
type BundleConfig struct {
	// Path of the YAML or JSON bundle, relative to the working directory.
	// Default: none (required).
	Path string `json:"path"`
	// Role is baseline, org, repo, env or local_override. Default: none.
	Role string `json:"role,omitempty"`
	// Signature is the path of the bundle's signature file. Default: none.
	Signature string `json:"signature,omitempty"`
}

// IdentityConfig lists the credentials Nomos accepts. Secrets may be Caddy
// placeholders such as {env.NOMOS_API_KEY}; they are resolved at provision
// time and never written to logs.
type IdentityConfig struct {
	// APIKeys map bearer keys to principals. Default: none.
	APIKeys []APIKeyConfig `json:"api_keys,omitempty"`
	// APIKeysFile holds one "<key> <principal>" pair per line. Default: none.
	APIKeysFile string `json:"api_keys_file,omitempty"`
	// AgentSecrets are the HMAC secrets of signing agents. Default: none.
	AgentSecrets []AgentSecretConfig `json:"agent_secrets,omitempty"`
	// LegacyBodySignatures also accepts the legacy agent signature, an HMAC
	// of the body alone (or of "<timestamp>.<body>"), which binds neither
	// the method, the path nor the principal: a captured request can be
	// replayed by another principal or on another endpoint. Only for
	// clients that cannot yet sign v2. Default: false (v2 only).
	LegacyBodySignatures bool `json:"legacy_body_signatures,omitempty"`
	// RequireTimestamp makes X-Nomos-Timestamp mandatory on legacy body
	// signatures; v2 signatures always carry one. Default: false.
	RequireTimestamp bool `json:"require_timestamp,omitempty"`
	// MaxClockSkew bounds the distance between a signed timestamp and the
	// server clock, either way. Default: 5m.
	MaxClockSkew caddy.Duration `json:"max_clock_skew,omitempty"`
	// ReplayCacheSize bounds the number of agent signature nonces
	// remembered for replay protection. Size it above the peak rate of
	// signed requests times twice max_clock_skew; when it is full, the
	// oldest timestamps are refused rather than risk a replay.
	// Default: 10000.
	ReplayCacheSize int `json:"replay_cache_size,omitempty"`
	// JWT accepts bearer JWTs (RS256, ES256, EdDSA). Default: off.
	JWT *JWTConfig `json:"jwt,omitempty"`
	// MTLS maps a verified client certificate to a principal. Default: off.
	MTLS *MTLSConfig `json:"mtls,omitempty"`
	// TrustedHeaders are identity headers honoured only on requests from
	// the server's trusted_proxies. Default: off.
	TrustedHeaders *TrustedHeadersConfig `json:"trusted_headers,omitempty"`
}

// APIKeyConfig maps one bearer key to a principal.
type APIKeyConfig struct {
	// Key is the bearer key (a placeholder such as {env.KEY} keeps it out
	// of the config). Default: none (required).
	Key string `json:"key"`
	// Principal is who presents Key. Default: none (required).
	Principal string `json:"principal"`
}

// AgentSecretConfig is one agent's HMAC secret.
type AgentSecretConfig struct {
	// Agent is the X-Nomos-Agent-Id the secret verifies. Default: none
	// (required).
	Agent string `json:"agent"`
	// Secret is the HMAC key (a placeholder keeps it out of the config).
	// Default: none (required).
	Secret string `json:"secret"`
}

// JWTConfig verifies bearer JWTs.
type JWTConfig struct {
	// Issuer must equal the iss claim. Default: none (required).
	Issuer string `json:"issuer"`
	// Audiences: the aud claim must contain one of them. Default: none
	// (required).
	Audiences []string `json:"audiences"`
	// PrincipalClaim names the claim that becomes the principal. Default: sub.
	PrincipalClaim string `json:"principal_claim,omitempty"`
	// Keys are PEM files of static public keys or certificates. Default:
	// none (then JWKSURL is required).
	Keys []string `json:"keys,omitempty"`
	// JWKSURL is fetched, cached and refreshed. Default: none.
	JWKSURL string `json:"jwks_url,omitempty"`
	// JWKSRefresh is the refresh interval. Default: 15m.
	JWKSRefresh caddy.Duration `json:"jwks_refresh,omitempty"`
}

// MTLSConfig maps the verified peer certificate to a principal. Caddy's
// tls client_auth performs the handshake.
type MTLSConfig struct {
	// Mode is spiffe (URI SAN in TrustDomain) or subject (common name).
	// Default: spiffe.
	Mode string `json:"mode,omitempty"`
	// TrustDomain is the SPIFFE trust domain. Default: none (required in
	// spiffe mode).
	TrustDomain string `json:"trust_domain,omitempty"`
	// Require refuses requests without a verified certificate. Default: false.
	Require bool `json:"require,omitempty"`
	// TrustCaddyVerification accepts a certificate Caddy verified with
	// trusted leaf certificates or a verifier module, where Go's own chain
	// verification is empty. Default: false (only verified chains count).
	TrustCaddyVerification bool `json:"trust_caddy_verification,omitempty"`
}

// TrustedHeadersConfig names the identity headers a trusted proxy sets.
type TrustedHeadersConfig struct {
	// Principal names the header carrying the principal. Default: none.
	Principal string `json:"principal,omitempty"`
	// Agent names the header carrying the agent. Default: none.
	Agent string `json:"agent,omitempty"`
}

// AuditConfig lists the audit sinks; every event goes to all of them.
type AuditConfig struct {
	// Sinks receive every event. Default: one sqlite sink under Caddy's
	// data directory, or stdout in stateless mode.
	Sinks []SinkConfig `json:"sinks,omitempty"`
	// Checkpoint signs every commit to the sqlite sinks with a key, so
	// that `nomos audit verify` with the key detects a log rewritten and
	// rehashed, or cut back, by someone without it. Every process that
	// appends to the file (the server, `nomos mcp stdio`, `nomos approvals
	// --config`) needs the same key. Default: none (the chain is unkeyed).
	Checkpoint *CheckpointConfig `json:"checkpoint,omitempty"`
}

// CheckpointConfig is the key that signs audit checkpoints. Exactly one of
// Key and KeyFile is set.
type CheckpointConfig struct {
	// Algorithm is hmac-sha256 or ed25519. Default: none (required).
	Algorithm string `json:"algorithm"`
	// Key is the key itself, usually a placeholder such as
	// {env.NOMOS_AUDIT_KEY}, resolved at provision time: at least 32
	// bytes for hmac-sha256, a PEM PKCS #8 private key for ed25519.
	// Default: none.
	Key string `json:"key,omitempty"`
	// KeyFile is a file holding the key, in the same form. Default: none.
	KeyFile string `json:"key_file,omitempty"`
}

// SinkConfig is one audit sink.
type SinkConfig struct {
	// Type is stdout, sqlite or webhook. Default: none (required).
	Type string `json:"type"`
	// Path of the sqlite file. Default: <data dir>/nomos/audit.db.
	Path string `json:"path,omitempty"`
	// Synchronous is the sqlite file's durability: "full" fsyncs every
	// commit, so a recorded decision survives power loss; "normal" (WAL,
	// fsync at checkpoints only) survives a crash or kill of the process
	// but may lose the last commits to a power loss or kernel crash, in
	// exchange for commits that do not wait for the disk. See
	// docs/audit.md. Default: full.
	Synchronous string `json:"synchronous,omitempty"`
	// URL of the webhook collector. Default: none (required for webhook).
	URL string `json:"url,omitempty"`
	// Outbox is the webhook's durable queue. Default: <data dir>/nomos/outbox-<hash>.db.
	Outbox string `json:"outbox,omitempty"`
	// Headers are added to webhook requests (placeholders allowed).
	// Default: none.
	Headers map[string]string `json:"headers,omitempty"`
	// BatchSize caps events per webhook request. Default: 50.
	BatchSize int `json:"batch_size,omitempty"`
	// FlushInterval is how often the outbox is drained. Default: 1s.
	FlushInterval caddy.Duration `json:"flush_interval,omitempty"`
}

// ApprovalsConfig enables human approval for REQUIRE_APPROVAL decisions.
type ApprovalsConfig struct {
	// Store is sqlite, file or redis. redis keeps approvals on the app's
	// shared state (state { redis { ... } }), so every replica sees them;
	// it is the only store allowed in stateless mode. Default: sqlite.
	Store string `json:"store,omitempty"`
	// Path of the store (sqlite and file only). Default:
	// <data dir>/nomos/approvals.db (or .json).
	Path string `json:"path,omitempty"`
	// TTL of a pending or approved approval. Default: 15m.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// Approvers are the principals who may decide. Default: none (nobody
	// may decide).
	Approvers []string `json:"approvers,omitempty"`
	// SingleUse consumes an approval on first use. Default: false.
	SingleUse bool `json:"single_use,omitempty"`
	// AllowSelfApproval lets a principal decide the approval of an action
	// it requested itself. Off, separation of duties holds at every door
	// (POST /approvals/decide and `nomos approvals --config`): such a
	// decision is refused with 403 approval_forbidden and audited.
	// Default: false.
	AllowSelfApproval bool `json:"allow_self_approval,omitempty"`
}

// StateConfig is the state replicas share. Without it every piece of state
// (approvals aside) is local to the process.
type StateConfig struct {
	// Redis is the shared Redis (or Valkey) server. When set, agent
	// signature nonces, the authorized-action index of /actions/report,
	// per-principal MCP session caps and MCP session bindings live there;
	// approvals do with approvals { store redis }. Default: none.
	Redis *RedisConfig `json:"redis,omitempty"`
	// Advertise is the URL other replicas use to reach this one's nomos_mcp
	// routes when they receive a request for an MCP session it owns (a
	// loopback or private address; the same path is kept). Required for
	// nomos_mcp behind a load balancer that does not pin sessions.
	// Default: none (sessions of other replicas answer 404).
	Advertise string `json:"advertise,omitempty"`
}

// RedisConfig says how to reach the shared Redis. Exactly one of Address
// and URL is set. A replica starts while Redis is down; every decision
// that needs it is then denied as state_unavailable.
type RedisConfig struct {
	// Address is host:port. Default: none.
	Address string `json:"address,omitempty"`
	// URL is a redis:// or rediss:// URL (it may carry the database).
	// Default: none.
	URL string `json:"url,omitempty"`
	// Username for Redis ACLs. Default: none.
	Username string `json:"username,omitempty"`
	// Password, usually a placeholder such as {env.NOMOS_REDIS_PASSWORD},
	// resolved at provision time (never written resolved into the config).
	// Default: none.
	Password string `json:"password,omitempty"`
	// DB is the database number. Default: 0.
	DB int `json:"db,omitempty"`
	// TLS connects with TLS. Default: false (on with a rediss:// URL).
	TLS bool `json:"tls,omitempty"`
	// TLSCAFile is a PEM file of CAs to trust for the server's certificate.
	// Default: the system roots.
	TLSCAFile string `json:"tls_ca_file,omitempty"`
	// TLSServerName overrides the name checked in the server's certificate.
	// Default: the host of Address or URL.
	TLSServerName string `json:"tls_server_name,omitempty"`
	// KeyPrefix starts every key, so deployments can share a server.
	// Default: nomos:.
	KeyPrefix string `json:"key_prefix,omitempty"`
	// DialTimeout bounds connecting. Default: 2s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// ReadTimeout bounds reading a reply. Default: 1s.
	ReadTimeout caddy.Duration `json:"read_timeout,omitempty"`
	// WriteTimeout bounds writing a command. Default: 1s.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`
}

// RuntimeConfig holds operational switches.
type RuntimeConfig struct {
	// Stateless forbids local state: no sqlite sink, and approvals only in
	// an external store (store redis). Default: false.
	Stateless bool `json:"stateless,omitempty"`
	// DeploymentMode is ci, k8s, remote_dev or unmanaged. Default: unmanaged.
	DeploymentMode string `json:"deployment_mode,omitempty"`
	// ConcurrencyLimit caps in-flight actions; more get 429. Default: 32.
	ConcurrencyLimit int `json:"concurrency_limit,omitempty"`
	// StrongGuarantee claims a hardened deployment; the assurance level
	// still depends on Evidence. Default: false.
	StrongGuarantee bool `json:"strong_guarantee,omitempty"`
	// Evidence is what the operator has verified about the deployment.
	// Default: nothing verified.
	Evidence *EvidenceConfig `json:"evidence,omitempty"`
	// RateLimit is shorthand for one rate_limits rule: a principal_action
	// bucket on every action type (id runtime.rate_limit) refilling Events
	// per Interval. Default: none.
	RateLimit *RateLimitConfig `json:"rate_limit,omitempty"`
	// RateLimitPerMinute is the legacy transport guard: requests per
	// principal per calendar minute on nomos_api's POST endpoints; more
	// get HTTP 429 rate_limited before the body is decoded. Default: none.
	RateLimitPerMinute int `json:"rate_limit_per_minute,omitempty"`
	// RateLimits are the service-stage token buckets, checked in every
	// front door after normalization and before policy. Default: none.
	RateLimits *RateLimitsConfig `json:"rate_limits,omitempty"`
	// LoopBreakers cap what one MCP session and one agent may do per
	// window. Default: none.
	LoopBreakers *LoopBreakersConfig `json:"loop_breakers,omitempty"`
}

// RateLimitConfig is the runtime rate_limit shorthand: Events per
// Interval, up to Burst at once.
type RateLimitConfig struct {
	// Events per Interval refill the bucket. Default: none (required).
	Events int `json:"events"`
	// Interval over which Events refill. Default: none (required).
	Interval caddy.Duration `json:"interval"`
	// Burst is the bucket size. Default: Events.
	Burst int `json:"burst,omitempty"`
}

// EvidenceConfig records verified facts behind the assurance level.
type EvidenceConfig struct {
	// RuntimeIsolationVerified: the executor runs isolated as its sandbox
	// profile claims. Default: false.
	RuntimeIsolationVerified bool `json:"runtime_isolation_verified,omitempty"`
	// WorkloadIdentityVerified: agents prove identity with workload
	// credentials. Default: false.
	WorkloadIdentityVerified bool `json:"workload_identity_verified,omitempty"`
	// DurableAuditVerified: audit lands in durable storage off the host.
	// Default: false.
	DurableAuditVerified bool `json:"durable_audit_verified,omitempty"`
}

// ExecutorConfig enables Nomos' own executors for built-in action types.
// Without it, built-in actions are denied as unsupported_action.
type ExecutorConfig struct {
	// WorkspaceRoot confines every file and process action. Default: none
	// (required).
	WorkspaceRoot string `json:"workspace_root"`
	// SandboxProfile is the isolation this host really provides, one of
	// the executor's profiles ordered by strength (none, local, landlock,
	// container; see docs/executors.md). landlock confines each
	// process.exec child with Landlock; an unknown profile, or one the host
	// cannot enforce, refuses the config. Default: none.
	SandboxProfile string `json:"sandbox_profile,omitempty"`
	// SandboxReadPaths are absolute paths a process.exec child confined by
	// the landlock sandbox may also read and execute, beyond the workspace
	// and the system paths (a toolchain under /opt, a read-only module
	// cache). Default: none.
	SandboxReadPaths []string `json:"sandbox_read_paths,omitempty"`
	// MaxOutputBytes caps outputs and written content. Default: 65536.
	MaxOutputBytes int64 `json:"max_output_bytes,omitempty"`
	// MaxOutputLines caps output lines. Default: 200.
	MaxOutputLines int64 `json:"max_output_lines,omitempty"`
	// ExecTimeout bounds process.exec. Default: 5s.
	ExecTimeout caddy.Duration `json:"exec_timeout,omitempty"`
	// HTTPTimeout bounds net.http_request. Default: 5s.
	HTTPTimeout caddy.Duration `json:"http_timeout,omitempty"`
	// EnvAllowlist names parent variables process.exec may pass on.
	// Default: none.
	EnvAllowlist []string `json:"env_allowlist,omitempty"`
	// AllowPrivateCIDRs opens private or loopback ranges to
	// net.http_request. Default: none.
	AllowPrivateCIDRs []string `json:"allow_private_cidrs,omitempty"`
	// TrustedCA is a PEM file of CA certificates net.http_request trusts
	// in addition to the system roots (for a private CA). Default: none.
	TrustedCA string `json:"trusted_ca,omitempty"`
}

// SecretConfig is one brokered secret. Agents only ever see lease ids.
type SecretConfig struct {
	// ID names the secret in secrets.checkout. Default: none (required).
	ID string `json:"id"`
	// EnvKey is the variable a lease sets for process.exec. Default: none
	// (required).
	EnvKey string `json:"env_key"`
	// Value may be a placeholder such as {env.DB_PASSWORD}. Default: none
	// (required).
	Value string `json:"value"`
	// TTL of a lease. Default: 5m.
	TTL caddy.Duration `json:"ttl,omitempty"`
}

// RedactionConfig adds operator patterns to the built-in ones.
type RedactionConfig struct {
	// Patterns are RE2 regular expressions. Default: none.
	Patterns []string `json:"patterns,omitempty"`
}
