package service

import (
	"errors"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/executor"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// evaluateTargets decides on the paths a built-in action really opens. The
// executor resolves every symlink in them; each resolved path that differs
// from the named one is evaluated as its own action (fs.read for a read,
// fs.write for a write), and the strictest outcome wins. A path that cannot
// be resolved safely denies. The resolved resources go into the decision's
// audit evidence, and the executor later opens exactly these.
func (s *Service) evaluateTargets(r *run) {
	if s.cfg.Executor == nil || r.d.Decision == policy.Deny || !action.IsBuiltin(r.a.ActionType) {
		return
	}
	ts, err := s.cfg.Executor.Targets(r.a)
	if err != nil {
		r.d, r.class = s.unresolvable(err)
		return
	}
	r.targets = ts
	var resolved []string
	for _, t := range ts {
		if t.Resource == "" || t.Resolved == t.Path {
			continue
		}
		resolved = append(resolved, t.Resource)
		sub, err := s.targetAction(r.a, t)
		if err != nil {
			r.d, r.class = s.invalidPatch(r.d, err), classOf(err)
			return
		}
		if r.d = stricter(r.d, s.cfg.Policy.Evaluate(sub)); r.d.Decision == policy.Deny {
			break
		}
	}
	if len(resolved) > 0 {
		r.meta = withMeta(r.meta, "resolved_resources", resolved)
	}
}

// unresolvable denies an action whose paths cannot be resolved inside the
// workspace, with the executor's reason.
func (s *Service) unresolvable(err error) (policy.Decision, string) {
	d := policy.Decision{Decision: policy.Deny, PolicyBundleHash: s.cfg.Policy.Hash()}
	var ee *executor.Error
	if errors.As(err, &ee) {
		d.ReasonCode = ee.Code + ": " + s.cfg.Redactor.String(ee.Message)
		return d, ee.Classification
	}
	d.ReasonCode = executor.CodeSandboxViolation + ": workspace path could not be resolved"
	return d, audit.ResultSandboxViolation
}

// targetAction is the action as it really opens t: the same action with
// the resolved resource for fs.read and fs.write, and the fs.write of one
// file for a patch.
func (s *Service) targetAction(a *action.Action, t executor.Target) (*action.Action, error) {
	typ, params := a.ActionType, a.Params
	if typ == action.TypeRepoApplyPatch {
		typ, params = action.TypeFSWrite, []byte(`{}`)
	}
	env := &action.Envelope{
		SchemaVersion: action.SchemaVersion, ActionID: a.ActionID, TraceID: a.TraceID,
		ActionType: typ, Resource: t.Resource, Params: params,
	}
	return action.New(env, action.Identity{Principal: a.Principal, Agent: a.Agent, Environment: a.Environment})
}
