package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/internal/identity"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/policy"
)

// resolve expands known placeholders ({env.X}, {file./path}) in a value.
func resolve(v string) string {
	return caddy.NewReplacer().ReplaceKnown(v, "")
}

// dataPath is the default location of Nomos state under Caddy's data dir.
func dataPath(name string) string {
	return filepath.Join(caddy.AppDataDir(), "nomos", name)
}

func (a *App) track(key string) { a.poolKeys = append(a.poolKeys, key) }

// provisionPolicies compiles every policy set, sharing engines whose
// bundles did not change since the previous config.
func (a *App) provisionPolicies() error {
	a.engines = map[string]*policy.Engine{}
	for _, name := range a.policyNames() {
		e, err := a.loadPolicySet(name, a.Policies[name])
		if err != nil {
			return fmt.Errorf("nomos: policy %q: %w", name, err)
		}
		a.engines[name] = e
		a.logger.Info("policy loaded", zap.String("policy", name), zap.String("policy_bundle_hash", e.Hash()))
	}
	return nil
}

func (a *App) loadPolicySet(name string, set *PolicySet) (*policy.Engine, error) {
	if set == nil || len(set.Bundles) == 0 {
		return nil, fmt.Errorf("at least one bundle is required")
	}
	sources, err := readBundles(set.Bundles)
	if err != nil {
		return nil, err
	}
	opts, keyData, err := a.policyOptions(set)
	if err != nil {
		return nil, err
	}
	key := configKey("policy", sources, keyData, opts.Environment, opts.AllowLocalOverride)
	a.track(key)
	return loadPooled(key, func() (*policy.Engine, func() error, error) {
		e, err := policy.Load(sources, opts)
		return e, nil, err
	})
}

func readBundles(bundles []BundleConfig) ([]policy.BundleSource, error) {
	out := make([]policy.BundleSource, 0, len(bundles))
	for _, b := range bundles {
		data, err := os.ReadFile(b.Path)
		if err != nil {
			return nil, fmt.Errorf("reading bundle: %w", err)
		}
		src := policy.BundleSource{Path: b.Path, Role: b.Role, Data: data}
		if b.Signature != "" {
			if src.Signature, err = os.ReadFile(b.Signature); err != nil {
				return nil, fmt.Errorf("reading bundle signature: %w", err)
			}
		}
		out = append(out, src)
	}
	return out, nil
}

func (a *App) policyOptions(set *PolicySet) (policy.LoadOptions, [][]byte, error) {
	opts := policy.LoadOptions{
		Environment:        a.Environment,
		AllowLocalOverride: a.Runtime.DeploymentMode == "unmanaged" && (a.Environment == "dev" || a.Environment == "local"),
	}
	var raw [][]byte
	for _, p := range set.VerifyKeys {
		data, err := os.ReadFile(p)
		if err != nil {
			return opts, nil, fmt.Errorf("reading verify key: %w", err)
		}
		k, err := policy.ParseSignatureKey(data)
		if err != nil {
			return opts, nil, fmt.Errorf("verify key %s: %w", p, err)
		}
		opts.VerifyKeys = append(opts.VerifyKeys, k)
		raw = append(raw, data)
	}
	return opts, raw, nil
}

// provisionAudit opens the sinks. The recorder is pooled so a reload keeps
// one hash chain and one writer per sqlite file.
func (a *App) provisionAudit() error {
	sinks := make([]SinkConfig, len(a.Audit.Sinks))
	for i, s := range a.Audit.Sinks {
		s, err := normalizeSink(s)
		if err != nil {
			return fmt.Errorf("nomos: audit: sink %d: %w", i, err)
		}
		sinks[i] = s
	}
	ck, err := loadCheckpointKey(a.Audit.Checkpoint, sinks)
	if err != nil {
		return fmt.Errorf("nomos: audit: checkpoint: %w", err)
	}
	keyID := ""
	if ck != nil {
		keyID = ck.ID()
	}
	key := configKey("audit", sinks, keyID)
	a.track(key)
	rec, err := loadPooled(key, func() (*audit.Recorder, func() error, error) {
		return openRecorder(sinks, ck, a.redactBytes)
	})
	if err != nil {
		return fmt.Errorf("nomos: audit: %w", err)
	}
	a.recorder = rec
	return nil
}

// loadCheckpointKey reads the signing key, if one is configured. It signs
// sqlite sinks only, so a key without one is a mistake worth refusing.
func loadCheckpointKey(c *CheckpointConfig, sinks []SinkConfig) (*audit.CheckpointKey, error) {
	if c == nil {
		return nil, nil
	}
	if !slices.ContainsFunc(sinks, func(s SinkConfig) bool { return s.Type == "sqlite" }) {
		return nil, errors.New("no sqlite sink to sign")
	}
	var material []byte
	switch {
	case c.Key != "" && c.KeyFile != "":
		return nil, errors.New("set key or key_file, not both")
	case c.Key != "":
		material = []byte(resolve(c.Key))
		if len(material) == 0 {
			return nil, fmt.Errorf("key %s is empty (an unset environment variable?)", c.Key)
		}
	case c.KeyFile != "":
		b, err := os.ReadFile(resolve(c.KeyFile))
		if err != nil {
			return nil, fmt.Errorf("read key_file: %w", err)
		}
		material = b
	default:
		return nil, errors.New("set key or key_file")
	}
	return audit.ParseCheckpointKey(c.Algorithm, material)
}

func normalizeSink(s SinkConfig) (SinkConfig, error) {
	switch s.Type {
	case "stdout":
	case "sqlite":
		if s.Path == "" {
			s.Path = dataPath("audit.db")
		}
		if s.Synchronous == "" {
			s.Synchronous = audit.SyncFull
		}
		if s.Synchronous != audit.SyncFull && s.Synchronous != audit.SyncNormal {
			return s, fmt.Errorf("sqlite sink: synchronous %q: want %s or %s", s.Synchronous, audit.SyncFull, audit.SyncNormal)
		}
	case "webhook":
		s.URL = resolve(s.URL)
		if !strings.HasPrefix(s.URL, "http://") && !strings.HasPrefix(s.URL, "https://") {
			return s, fmt.Errorf("webhook url must be http(s), got %q", s.URL)
		}
		if s.Outbox == "" {
			s.Outbox = dataPath("outbox-" + configKey("", s.URL)[1:17] + ".db")
		}
		headers := map[string]string{}
		for k, v := range s.Headers {
			headers[k] = resolve(v)
		}
		s.Headers = headers
	default:
		return s, fmt.Errorf("unknown sink type %q (want stdout, sqlite or webhook)", s.Type)
	}
	return s, nil
}

// openRecorder opens every sink; on any failure the ones already open are
// closed again.
func openRecorder(cfgs []SinkConfig, ck *audit.CheckpointKey, redact func([]byte) []byte) (*audit.Recorder, func() error, error) {
	var sinks []audit.Sink
	closeAll := func() {
		for _, s := range sinks {
			_ = s.Close()
		}
	}
	for _, c := range cfgs {
		s, err := openSink(c, ck)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		sinks = append(sinks, s)
	}
	rec, err := audit.NewRecorder(sinks, audit.WithRedactor(redact))
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return rec, rec.Close, nil
}

func openSink(c SinkConfig, ck *audit.CheckpointKey) (audit.Sink, error) {
	switch c.Type {
	case "stdout":
		return audit.NewFuncSink("stdout", zapAuditWrite), nil
	case "sqlite":
		if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
			return nil, err
		}
		opts := []audit.SQLiteOption{audit.WithSynchronous(c.Synchronous)}
		if ck != nil {
			opts = append(opts, audit.WithCheckpointKey(ck))
		}
		return audit.OpenSQLite(c.Path, opts...)
	}
	if err := os.MkdirAll(filepath.Dir(c.Outbox), 0o700); err != nil {
		return nil, err
	}
	w, err := audit.NewWebhookSink(audit.WebhookConfig{
		URL: c.URL, OutboxPath: c.Outbox, Headers: c.Headers, BatchSize: c.BatchSize,
		FlushInterval: time.Duration(c.FlushInterval),
		// A collector that keeps refusing leaves events waiting in the
		// outbox; say so, so an operator sees it before the disk does.
		OnError: func(err error) {
			caddy.Log().Named("nomos.audit_delivery").Warn("audit webhook delivery failed; events wait in the outbox",
				zap.String("outbox", c.Outbox), zap.Error(err))
		},
	})
	if err != nil {
		return nil, err
	}
	w.Start(context.Background())
	return w, nil
}

// errAuditLogOff is the stdout sink's failure when Caddy's log config
// would drop its lines (nomos.audit excluded, or a level above INFO): an
// event the sink cannot hand on is a failed write, never a silent drop,
// so the decision it records is refused.
var errAuditLogOff = errors.New("audit: the nomos.audit logger is off in Caddy's log config (excluded, or a level above INFO); the stdout sink cannot write")

// zapAuditWrite logs one event through the logger named nomos.audit, so
// Caddy's log config can route it. caddy.Log() is read on every write
// because the pooled recorder outlives any one config. The line is not
// copied: zap encodes the field before Write returns, and a sealed line is
// never changed.
func zapAuditWrite(line []byte) error {
	ce := auditLogger().Check(zapcore.InfoLevel, "audit event")
	if ce == nil {
		return errAuditLogOff
	}
	ce.Write(zap.Reflect("event", json.RawMessage(line)))
	return nil
}

// namedAuditLogger is the nomos.audit child of one Caddy default logger.
type namedAuditLogger struct{ base, named *zap.Logger }

var auditLog atomic.Pointer[namedAuditLogger]

// auditLogger is the nomos.audit child of Caddy's current default logger,
// made again only when a config load replaced that logger (Named clones
// the logger, which is not worth doing per event).
func auditLogger() *zap.Logger {
	base := caddy.Log()
	if l := auditLog.Load(); l != nil && l.base == base {
		return l.named
	}
	l := &namedAuditLogger{base: base, named: base.Named("nomos.audit")}
	auditLog.Store(l)
	return l.named
}

// provisionApprovals opens the approval store, if approvals are enabled.
func (a *App) provisionApprovals() error {
	c := a.Approvals
	if c == nil {
		return nil
	}
	if c.Store == "" {
		c.Store = "sqlite"
	}
	if c.TTL <= 0 {
		c.TTL = caddy.Duration(15 * time.Minute)
	}
	if c.Store == "redis" {
		return a.provisionRedisApprovals()
	}
	if c.Path == "" {
		c.Path = dataPath(map[string]string{"sqlite": "approvals.db", "file": "approvals.json"}[c.Store])
	}
	if c.Store != "sqlite" && c.Store != "file" {
		return fmt.Errorf("nomos: approvals: unknown store %q (want sqlite, file or redis)", c.Store)
	}
	key := configKey("approvals", c.Store, c.Path)
	a.track(key)
	st, err := loadPooled(key, func() (approvals.Store, func() error, error) {
		st, err := openApprovals(c.Store, c.Path)
		if err != nil {
			return nil, nil, err
		}
		return st, st.Close, nil
	})
	if err != nil {
		return fmt.Errorf("nomos: approvals: %w", err)
	}
	a.approvals = st
	return nil
}

// provisionRedisApprovals puts approvals on the shared state; the store
// holds nothing but the pooled client.
func (a *App) provisionRedisApprovals() error {
	if a.Approvals.Path != "" {
		return errors.New("nomos: approvals: store redis takes no path")
	}
	if a.shared == nil {
		return errors.New("nomos: approvals: store redis needs state redis (state { redis { address <host:port> } })")
	}
	a.approvals = approvals.OpenRedis(a.shared)
	return nil
}

func openApprovals(kind, path string) (approvals.Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if kind == "file" {
		return approvals.OpenFile(path)
	}
	return approvals.OpenSQLite(path)
}

// provisionIdentity builds the authenticator. It is pooled by its resolved
// config so the replay cache and JWKS survive a reload.
func (a *App) provisionIdentity() error {
	cfg, err := a.identityConfig()
	if err != nil {
		return fmt.Errorf("nomos: identity: %w", err)
	}
	replayKey, err := a.replayStore(&cfg)
	if err != nil {
		return fmt.Errorf("nomos: identity: %w", err)
	}
	key := configKey("identity", cfg, replayKey)
	a.track(key)
	auth, err := loadPooled(key, func() (*identity.Authenticator, func() error, error) {
		auth, err := identity.New(cfg)
		if err != nil {
			return nil, nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		auth.Start(ctx)
		return auth, func() error { cancel(); return nil }, nil
	})
	if err != nil {
		return fmt.Errorf("nomos: identity: %w", err)
	}
	a.auth = auth
	return nil
}

// replayStore sets the replay store of cfg and returns the pool key of
// what it is built on, which keys the authenticator too: with shared state
// the nonces live in Redis, seen by every replica; otherwise in a local
// cache.
func (a *App) replayStore(cfg *identity.Config) (string, error) {
	if a.shared != nil {
		cfg.ReplayStore = identity.NewSharedReplay(a.shared, cfg.MaxClockSkew)
		return a.stateKey, nil
	}
	rc, err := a.replayCache(*cfg)
	cfg.ReplayStore = rc
	return "local", err
}

// replayCache is pooled apart from the authenticator, keyed only by its
// own size and skew: a reload that changes keys or secrets rebuilds the
// authenticator but keeps every used nonce, so a request captured before
// the reload cannot be replayed after it.
func (a *App) replayCache(cfg identity.Config) (*identity.ReplayCache, error) {
	key := configKey("identity_replay", cfg.ReplayCacheSize, cfg.MaxClockSkew)
	a.track(key)
	return loadPooled(key, func() (*identity.ReplayCache, func() error, error) {
		rc, err := identity.NewReplayCache(cfg.ReplayCacheSize, cfg.MaxClockSkew)
		return rc, nil, err
	})
}

func (a *App) identityConfig() (identity.Config, error) {
	c := a.Identity
	if c == nil {
		c = new(IdentityConfig)
	}
	cfg := identity.Config{RequireTimestamp: c.RequireTimestamp, MaxClockSkew: time.Duration(c.MaxClockSkew),
		LegacyBodySignatures: c.LegacyBodySignatures, ReplayCacheSize: c.ReplayCacheSize}
	for _, k := range c.APIKeys {
		cfg.APIKeys = append(cfg.APIKeys, identity.APIKey{Key: resolve(k.Key), Principal: k.Principal})
	}
	fileKeys, err := readAPIKeysFile(c.APIKeysFile)
	if err != nil {
		return cfg, err
	}
	cfg.APIKeys = append(cfg.APIKeys, fileKeys...)
	for _, s := range c.AgentSecrets {
		cfg.AgentSecrets = append(cfg.AgentSecrets, identity.AgentSecret{AgentID: s.Agent, Secret: resolve(s.Secret)})
	}
	if err := checkResolved(cfg); err != nil {
		return cfg, err
	}
	if cfg.JWT, err = jwtConfig(c.JWT); err != nil {
		return cfg, err
	}
	if c.MTLS != nil {
		cfg.MTLS = &identity.MTLSConfig{Mode: c.MTLS.Mode, TrustDomain: c.MTLS.TrustDomain, Require: c.MTLS.Require,
			TrustPeerCertificates: c.MTLS.TrustCaddyVerification}
	}
	if c.TrustedHeaders != nil {
		cfg.TrustedHeaders = &identity.TrustedHeaderConfig{PrincipalHeader: c.TrustedHeaders.Principal, AgentHeader: c.TrustedHeaders.Agent}
	}
	return cfg, nil
}

// checkResolved refuses secrets whose placeholder resolved to nothing, so a
// missing environment variable never becomes an empty key.
func checkResolved(cfg identity.Config) error {
	for i, k := range cfg.APIKeys {
		if k.Key == "" {
			return fmt.Errorf("api key %d for principal %q is empty (unset environment variable?)", i, k.Principal)
		}
	}
	for _, s := range cfg.AgentSecrets {
		if s.Secret == "" {
			return fmt.Errorf("agent secret for %q is empty (unset environment variable?)", s.AgentID)
		}
	}
	return nil
}

func readAPIKeysFile(path string) ([]identity.APIKey, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("api_keys_file: %w", err)
	}
	var keys []identity.APIKey
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("api_keys_file %s:%d: want \"<key> <principal>\"", path, n)
		}
		keys = append(keys, identity.APIKey{Key: f[0], Principal: f[1]})
	}
	return keys, nil
}

func jwtConfig(c *JWTConfig) (*identity.JWTConfig, error) {
	if c == nil {
		return nil, nil
	}
	out := &identity.JWTConfig{
		Issuer: c.Issuer, Audiences: c.Audiences, PrincipalClaim: c.PrincipalClaim,
		JWKSURL: resolve(c.JWKSURL), JWKSRefresh: time.Duration(c.JWKSRefresh),
	}
	for _, p := range c.Keys {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("jwt key: %w", err)
		}
		out.StaticKeys = append(out.StaticKeys, data)
	}
	return out, nil
}

// provisionServices binds one pipeline per policy set.
func (a *App) provisionServices() error {
	a.assurance = assuranceLevel(a.Runtime, a.Audit, a.Identity, a.Executor)
	authorized, err := a.provisionAuthorized()
	if err != nil {
		return err
	}
	a.services = map[string]*service.Service{}
	for _, name := range a.policyNames() {
		cfg := service.Config{
			Environment: a.Environment, Policy: a.engines[name], Audit: a.metrics.auditObserver(a.recorder),
			RateLimits: a.limiter, SharedRateLimits: a.sharedLimits(), LoopGuard: a.loopGuard, SharedLoopGuard: a.sharedLoopGuard(),
			Executor: a.exec, Redactor: a.redactor, AssuranceLevel: a.assurance, Logger: a.slog,
			Authorized: authorized,
		}
		a.metrics.hook(&cfg, a.policyActionTypes())
		if a.approvals != nil {
			cfg.Approvals, cfg.ApprovalTTL = a.approvals, time.Duration(a.Approvals.TTL)
			cfg.Approvers, cfg.SingleUseApprovals = a.Approvals.Approvers, a.Approvals.SingleUse
			cfg.AllowSelfApproval = a.Approvals.AllowSelfApproval
		}
		s, err := service.New(cfg)
		if err != nil {
			return fmt.Errorf("nomos: policy %q: %w", name, err)
		}
		a.services[name] = s
	}
	return nil
}

// provisionAuthorized shares one memory of authorized external actions
// across policy sets and reloads, so an action authorized before a reload
// can still be reported after it.
func (a *App) provisionAuthorized() (service.ReportIndex, error) {
	if a.shared != nil {
		return service.NewRedisReportIndex(a.shared, 0), nil
	}
	key := configKey("authorized", a.Environment)
	a.track(key)
	m, err := loadPooled(key, func() (*service.Authorized, func() error, error) {
		m, err := service.NewAuthorized(0, 0)
		return m, func() error { return nil }, err
	})
	if err != nil {
		return nil, fmt.Errorf("nomos: reports: %w", err)
	}
	return m, nil
}
