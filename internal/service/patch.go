package service

import (
	"encoding/json"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/executor"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// ReasonInvalidParams denies an action whose params cannot be interpreted.
const ReasonInvalidParams = "invalid_params"

// patchParams are the two accepted forms of repo.apply_patch.
type patchParams struct {
	Patch   string `json:"patch"`
	Path    string `json:"path"`
	Content string `json:"content"`
}

// evaluatePatchPaths checks every file a patch touches as its own fs.write.
// The strictest outcome wins: a denied path denies the patch, a path that
// needs approval makes the patch need approval.
func (s *Service) evaluatePatchPaths(a *action.Action, d policy.Decision) (policy.Decision, string) {
	paths, err := patchTargets(a.Params)
	if err != nil {
		return s.invalidPatch(d, err), audit.ResultValidationError
	}
	for _, p := range paths {
		sub, err := s.writeAction(a, p)
		if err != nil {
			return s.invalidPatch(d, err), classOf(err)
		}
		d = stricter(d, s.cfg.Policy.Evaluate(sub))
		if d.Decision == policy.Deny {
			return d, ""
		}
	}
	return d, ""
}

// invalidPatch denies a patch Nomos cannot interpret, saying why.
func (s *Service) invalidPatch(d policy.Decision, err error) policy.Decision {
	return policy.Decision{Decision: policy.Deny, ReasonCode: ReasonInvalidParams + ": " + s.cfg.Redactor.String(err.Error()),
		PolicyBundleHash: d.PolicyBundleHash}
}

func patchTargets(params json.RawMessage) ([]string, error) {
	var p patchParams
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, err
	}
	if p.Patch != "" {
		return executor.PatchPaths(p.Patch)
	}
	return []string{p.Path}, nil
}

// writeAction is the fs.write the patch performs on one path.
func (s *Service) writeAction(a *action.Action, path string) (*action.Action, error) {
	res, err := action.MCPFileShorthand(path)
	if err != nil {
		return nil, err
	}
	env := &action.Envelope{
		SchemaVersion: action.SchemaVersion, ActionID: a.ActionID, TraceID: a.TraceID,
		ActionType: "fs.write", Resource: res, Params: json.RawMessage(`{}`),
	}
	return action.New(env, action.Identity{Principal: a.Principal, Agent: a.Agent, Environment: a.Environment})
}

// stricter keeps the more restrictive of two decisions.
func stricter(cur, next policy.Decision) policy.Decision {
	if rank(next.Decision) > rank(cur.Decision) {
		return next
	}
	return cur
}

func rank(decision string) int {
	switch decision {
	case policy.Allow:
		return 0
	case policy.RequireApproval:
		return 1
	}
	return 2
}
