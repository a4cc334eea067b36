package service

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/executor"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// resolution is what evaluateTargets learned about the paths an action
// really opens.
type resolution struct {
	d     policy.Decision
	class string
	// targets are the paths the executor will open, as decided.
	targets []executor.Target
	// resolved lists the resolved resources that differ from the named
	// ones, for audit and approval binding.
	resolved []string
}

// evaluateTargets decides on the paths a built-in action really opens. The
// executor resolves every symlink in them; each resolved path that differs
// from the named one is evaluated as its own action (fs.read for a read,
// fs.write for a write), and the strictest outcome wins, with the
// obligations of equal outcomes merged. A path that cannot be resolved
// safely denies. Nothing is changed on disk.
func (s *Service) evaluateTargets(a *action.Action, d policy.Decision, class string) resolution {
	res := resolution{d: d, class: class}
	if s.cfg.Executor == nil || d.Decision == policy.Deny || !action.IsBuiltin(a.ActionType) {
		return res
	}
	ts, err := s.cfg.Executor.Targets(a)
	if err != nil {
		res.d, res.class = s.unresolvable(err)
		return res
	}
	res.targets = ts
	for _, t := range ts {
		if t.Resource == "" || t.Resolved == t.Path {
			continue
		}
		res.resolved = append(res.resolved, t.Resource)
		sub, err := s.targetAction(a, t)
		if err != nil {
			res.d, res.class = s.invalidPatch(d, err), classOf(err)
			return res
		}
		if res.d = s.cfg.Policy.Stricter(res.d, s.cfg.Policy.Evaluate(sub)); res.d.Decision == policy.Deny {
			return res
		}
	}
	return res
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

// boundFingerprint binds an approval to the resolved paths as well as to
// the action: an approval given while src/link led to ci/deploy.yml does
// not cover the same request once src/link leads elsewhere. Without
// resolved paths it is the action's fingerprint.
func boundFingerprint(fingerprint string, resolved []string) string {
	if len(resolved) == 0 {
		return fingerprint
	}
	sum := sha256.Sum256([]byte(fingerprint + "\n" + strings.Join(resolved, "\n")))
	return hex.EncodeToString(sum[:])
}
