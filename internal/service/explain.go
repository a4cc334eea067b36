package service

import (
	"context"

	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// ExplainResponse is the policy explanation plus the runtime facts that
// shape it. It never carries params or secrets.
type ExplainResponse struct {
	*policy.Explanation
	EngineVersion  string `json:"engine_version"`
	AssuranceLevel string `json:"assurance_level,omitempty"`
}

// Explain decides without side effects: no approval is created or used,
// nothing executes and no execution audit is written.
func (s *Service) Explain(ctx context.Context, body []byte, id action.Identity) (*ExplainResponse, error) {
	a, err := s.prepareQuiet(body, id)
	if err != nil {
		return nil, err
	}
	ex := s.cfg.Policy.Explain(a)
	d, class := s.evaluate(a)
	if rank(d.Decision) > rank(ex.Decision) {
		explainPatchPaths(ex, d)
	}
	if res := s.evaluateTargets(a, d, class); rank(res.d.Decision) > rank(d.Decision) {
		explainResolved(ex, res)
	}
	return &ExplainResponse{Explanation: ex, EngineVersion: EngineVersion, AssuranceLevel: s.cfg.AssuranceLevel}, nil
}

// explainPatchPaths reports the outcome /action would give a patch whose
// touched paths are stricter than the patch rule itself: each path is
// decided as its own fs.write.
func explainPatchPaths(ex *policy.Explanation, d policy.Decision) {
	ex.Decision, ex.ReasonCode, ex.MatchedRuleIDs = d.Decision, d.ReasonCode, d.MatchedRuleIDs
	if ex.MatchedRuleIDs == nil {
		ex.MatchedRuleIDs = []string{}
	}
	ex.ObligationsPreview = policy.Obligations{}
	ex.WhyDenied = &policy.WhyDenied{
		ReasonCode:        d.ReasonCode,
		MatchedConditions: map[string]bool{"patch_path_rule_match": len(d.MatchedRuleIDs) > 0},
		RemediationHint:   "A file this patch touches is decided as its own fs.write, and that decision is stricter than the patch rule.",
	}
	ex.MinimalAllowingChange = "Limit the patch to paths the policy allows writing, or request approval."
}

// explainResolved reports the outcome /action would give an action whose
// paths resolve, through symlinks, to paths policy treats more strictly.
func explainResolved(ex *policy.Explanation, res resolution) {
	explainPatchPaths(ex, res.d)
	ex.WhyDenied.MatchedConditions = map[string]bool{"resolved_path_rule_match": len(res.d.MatchedRuleIDs) > 0}
	ex.WhyDenied.RemediationHint = "A path this action opens resolves, through a symlink, to a path that is decided more strictly."
	if len(res.resolved) == 0 {
		ex.WhyDenied.RemediationHint = "A path this action opens cannot be resolved safely inside the workspace."
	}
	ex.MinimalAllowingChange = "Name the path the action really opens, and make sure policy allows it."
}

// prepareQuiet is prepare without audit, for side-effect-free endpoints.
func (s *Service) prepareQuiet(body []byte, id action.Identity) (*action.Action, error) {
	id.Environment = s.cfg.Environment
	env, err := action.DecodeEnvelope(body)
	if err != nil {
		return nil, Errorf(400, CodeValidation, "%s", s.cfg.Redactor.String(err.Error()))
	}
	a, err := action.New(env, id)
	if err != nil {
		return nil, Errorf(400, CodeValidation, "%s", s.cfg.Redactor.String(err.Error()))
	}
	return a, nil
}
