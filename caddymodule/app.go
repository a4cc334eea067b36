package caddymodule

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/internal/credentials"
	"github.com/caddy-nomos/nomos/internal/identity"
	"github.com/caddy-nomos/nomos/internal/loopguard"
	"github.com/caddy-nomos/nomos/internal/pins"
	"github.com/caddy-nomos/nomos/internal/ratelimit"
	"github.com/caddy-nomos/nomos/internal/redact"
	"github.com/caddy-nomos/nomos/internal/service"
	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App is the nomos app: it owns the state every Nomos handler shares
// (policy sets, identity, audit, approvals, executors, runtime limits).
// Provision validates all of it, so a bad config is refused and the
// running config keeps serving.
type App struct {
	// Environment is bound to every action. Default: dev.
	Environment string `json:"environment,omitempty"`
	// Policies are named policy sets; handlers pick one. Default: none.
	Policies map[string]*PolicySet `json:"policies,omitempty"`
	// Identity lists the accepted credentials. Default: none (every
	// request fails authentication unless a route is anonymous).
	Identity *IdentityConfig `json:"identity,omitempty"`
	// Audit lists the audit sinks. Default: sqlite under the data dir.
	Audit *AuditConfig `json:"audit,omitempty"`
	// Approvals enables approvals. Default: off (REQUIRE_APPROVAL denies).
	Approvals *ApprovalsConfig `json:"approvals,omitempty"`
	// Executor enables built-in executors. Default: off.
	Executor *ExecutorConfig `json:"executor,omitempty"`
	// Credentials are brokered secrets for secrets.checkout. Default: none.
	Credentials []SecretConfig `json:"credentials,omitempty"`
	// Redaction adds operator patterns. Default: built-ins only.
	Redaction *RedactionConfig `json:"redaction,omitempty"`
	// Runtime holds operational switches. Default: the defaults of
	// RuntimeConfig.
	Runtime *RuntimeConfig `json:"runtime,omitempty"`
	// State is the state replicas share (Redis). Default: none (local).
	State *StateConfig `json:"state,omitempty"`
	// Upstreams are the upstream MCP servers nomos_mcp routes expose, by
	// name. Default: none.
	Upstreams map[string]*UpstreamConfig `json:"upstreams,omitempty"`
	// Pins is where the upstreams' reviewed tool definitions are kept.
	// Default: a sqlite file under the data dir (memory when stateless),
	// opened when there are upstreams.
	Pins *PinsConfig `json:"pins,omitempty"`

	ctx       caddy.Context
	logger    *zap.Logger
	slog      *slog.Logger
	poolKeys  []string
	engines   map[string]*policy.Engine
	recorder  *audit.Recorder
	approvals approvals.Store
	shared    *sharedstate.Client
	stateKey  string // pool key of shared
	auth      *identity.Authenticator
	exec      service.Executor
	redactor  service.Redactor
	red       *redact.Redactor
	broker    *credentials.Broker
	// brokerValues are redacted everywhere.
	brokerValues []string
	services     map[string]*service.Service
	upstreams    map[string]*mcp.Upstream
	limiter      *ratelimit.Rules
	loopGuard    *loopguard.Guard
	window       *ratelimit.Window
	metrics      *metrics
	pins         pins.Store
	pinBinding   *mcp.Pins
	pinReleases  []func()
	slots        chan struct{}
	// after runs completions recorded once the client has its answer.
	after     afterResponse
	assurance string
	// guardKeys counts nomos_guard breaker keys in this config.
	guardKeys map[string]int
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "nomos",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision builds and validates every component. Any error refuses the
// whole config.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.slog = slog.New(zapslog.NewHandler(a.logger.Core()))
	a.applyDefaults()
	if err := a.validateRuntime(); err != nil {
		return err
	}
	steps := []func() error{a.provisionPolicies, a.provisionRedaction, a.provisionAudit, a.provisionState,
		a.provisionApprovals, a.provisionIdentity, a.provisionExecutor, a.provisionLimits, a.provisionMetrics,
		a.provisionServices, a.provisionUpstreams}
	for _, step := range steps {
		if err := step(); err != nil {
			a.recordRefusedReload(err)
			return err
		}
	}
	a.slots = make(chan struct{}, a.Runtime.ConcurrencyLimit)
	return nil
}

func (a *App) applyDefaults() {
	if a.Environment == "" {
		a.Environment = "dev"
	}
	if a.Runtime == nil {
		a.Runtime = new(RuntimeConfig)
	}
	if a.Runtime.DeploymentMode == "" {
		a.Runtime.DeploymentMode = "unmanaged"
	}
	if a.Runtime.ConcurrencyLimit <= 0 {
		a.Runtime.ConcurrencyLimit = 32
	}
	if a.Audit == nil {
		a.Audit = new(AuditConfig)
	}
	if len(a.Audit.Sinks) == 0 {
		a.Audit.Sinks = []SinkConfig{{Type: "sqlite"}}
		if a.Runtime.Stateless {
			a.Audit.Sinks[0].Type = "stdout"
		}
	}
}

// validateRuntime enforces what stateless mode forbids.
func (a *App) validateRuntime() error {
	modes := []string{"ci", "k8s", "remote_dev", "unmanaged"}
	if !slices.Contains(modes, a.Runtime.DeploymentMode) {
		return fmt.Errorf("nomos: runtime: unknown deployment_mode %q (want ci, k8s, remote_dev or unmanaged)", a.Runtime.DeploymentMode)
	}
	if !a.Runtime.Stateless {
		return nil
	}
	if a.Approvals != nil && a.Approvals.Store != "redis" {
		return fmt.Errorf("nomos: runtime: approvals in stateless mode need an external store (store redis)")
	}
	for _, s := range a.Audit.Sinks {
		if s.Type == "sqlite" {
			return fmt.Errorf("nomos: runtime: the sqlite audit sink is not allowed in stateless mode")
		}
	}
	return nil
}

// Service returns the pipeline bound to the named policy set.
func (a *App) Service(name string) (*service.Service, error) {
	s, ok := a.services[name]
	if !ok {
		return nil, fmt.Errorf("nomos: unknown policy set %q (defined: %v)", name, a.policyNames())
	}
	return s, nil
}

func (a *App) policyNames() []string {
	return slices.Sorted(maps.Keys(a.Policies))
}

// Start implements caddy.App: the config now serves. It records
// runtime.reload and points the state metrics at this config. Background
// work lives in pooled components.
func (a *App) Start() error {
	if err := a.recordReload(); err != nil {
		return err
	}
	a.metrics.goLive(a)
	return nil
}

// Stop implements caddy.App.
func (a *App) Stop() error { return nil }

// Cleanup releases this config's hold on pooled state; state shared with a
// newer config survives.
func (a *App) Cleanup() error {
	if !a.after.close(afterResponseWait) && a.logger != nil {
		a.logger.Error("audit completions still being recorded after the shutdown wait; they may be missing",
			zap.Duration("waited", afterResponseWait))
	}
	for _, release := range a.pinReleases {
		release()
	}
	for _, k := range a.poolKeys {
		if _, err := pool.Delete(k); err != nil {
			a.logger.Error("releasing pooled state", zap.String("key", k), zap.Error(err))
		}
	}
	return nil
}

// acquire takes a concurrency slot without blocking.
func (a *App) acquire() bool {
	select {
	case a.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (a *App) release() { <-a.slots }

// trustedHeaders are the identity header names a trusted proxy may set.
func (a *App) trustedHeaders() []string {
	if a.Identity == nil || a.Identity.TrustedHeaders == nil {
		return nil
	}
	th := a.Identity.TrustedHeaders
	return []string{th.Principal, th.Agent}
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
