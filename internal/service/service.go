package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/approvals"
	"github.com/caddy-nomos/nomos/internal/executor"
	"github.com/caddy-nomos/nomos/internal/loopguard"
	"github.com/caddy-nomos/nomos/internal/ratelimit"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// EngineVersion is stamped on audit events and explain output.
const EngineVersion = "nomos-caddy/0.1.0"

// ReportPath is where callers report the outcome of external actions.
const ReportPath = "/actions/report"

// Recorder writes audit events synchronously; an error means the event is
// not stored.
type Recorder interface {
	Record(ctx context.Context, e *audit.Event) error
	// RecordAll records events of one action as consecutive links, in
	// one durable commit where the recorder can (see audit.Recorder).
	RecordAll(ctx context.Context, events ...*audit.Event) error
}

// Executor runs a built-in action that policy allowed. Targets names the
// workspace paths an action would open, resolved; policy decides on them as
// well as on the named paths, and Execute opens only what was decided.
type Executor interface {
	Targets(a *action.Action) ([]executor.Target, error)
	Execute(ctx context.Context, a *action.Action, d policy.Decision, decided []executor.Target) (*executor.Result, error)
}

// Redactor removes secrets from text leaving the process.
type Redactor interface {
	String(s string) string
}

// Config wires a Service. Policy and Audit are required.
type Config struct {
	// Environment is bound to every action; it never comes from a request.
	Environment string
	Policy      *policy.Engine
	Audit       Recorder
	// Approvals is nil when approvals are disabled.
	Approvals   approvals.Store
	ApprovalTTL time.Duration
	// Approvers may decide approvals; empty authorizes nobody.
	Approvers []string
	// AllowSelfApproval lets a principal decide the approval of its own
	// request; by default it is refused (separation of duties).
	AllowSelfApproval bool
	// SingleUseApprovals consumes an approval on its first use.
	SingleUseApprovals bool
	// RateLimits, when set, are the rate_limits token buckets checked
	// after normalization and before policy; an action over one is denied
	// as RATE_LIMIT_EXCEEDED.
	RateLimits *ratelimit.Rules
	// SharedRateLimits, when set, checks the RateLimits rules on buckets
	// the replicas share (Redis); an error denies as state_unavailable.
	SharedRateLimits *ratelimit.Shared
	// LoopGuard, when set, caps what each MCP session and agent may do
	// per window; a tripped cap denies as LOOP_BREAKER_TRIPPED.
	LoopGuard *loopguard.Guard
	// SharedLoopGuard, when set, checks LoopGuard's caps with the agent
	// windows the replicas share (Redis); an error denies as
	// state_unavailable.
	SharedLoopGuard *loopguard.Shared
	// Authorized remembers the external actions authorized, for
	// /actions/report. Default: a new one with the default capacity and
	// window (a caller that wants it to survive reloads passes its own).
	Authorized ReportIndex
	// Executor is nil when built-in actions are not executed.
	Executor Executor
	Redactor Redactor
	// Observe, when set, is told the final decision of every action and
	// refusal, from every front door (for metrics). It must not block.
	Observe func(Observation)
	// ObserveRateLimit, when set, is told each matching bucket of each
	// check: result allowed, exceeded (the empty bucket) or not_consumed
	// (a bucket with a token that another bucket's denial left untouched).
	ObserveRateLimit func(result, ruleID, scope string)
	// ObserveLoopBreaker, when set, is told each tripped loop breaker.
	ObserveLoopBreaker func(scope, limit string)
	AssuranceLevel     string
	Logger             *slog.Logger
	Clock              func() time.Time
}

// Service runs the pipeline. It is immutable after New and safe for
// concurrent use; a config reload builds a new one.
type Service struct {
	cfg       Config
	approvers map[string]bool
	decider   *Decider
}

// New validates cfg and fills defaults.
func New(cfg Config) (*Service, error) {
	if cfg.Policy == nil || cfg.Audit == nil {
		return nil, Errorf(500, CodeInternal, "service: policy and audit are required")
	}
	if cfg.ApprovalTTL <= 0 {
		cfg.ApprovalTTL = 15 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Redactor == nil {
		cfg.Redactor = nopRedactor{}
	}
	if cfg.Authorized == nil {
		var err error
		if cfg.Authorized, err = NewAuthorized(0, 0); err != nil {
			return nil, Errorf(500, CodeInternal, "service: %v", err)
		}
	}
	s := &Service{cfg: cfg, approvers: map[string]bool{}, decider: &Decider{
		Store: cfg.Approvals, Audit: cfg.Audit, Environment: cfg.Environment,
		AllowSelfApproval: cfg.AllowSelfApproval, Clock: cfg.Clock, Logger: cfg.Logger,
	}}
	for _, p := range cfg.Approvers {
		s.approvers[p] = true
	}
	return s, nil
}

// Environment is the configured environment.
func (s *Service) Environment() string { return s.cfg.Environment }

// PolicyHash is the merged hash of the policy in force.
func (s *Service) PolicyHash() string { return s.cfg.Policy.Hash() }

type nopRedactor struct{}

func (nopRedactor) String(s string) string { return s }
