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
	return &ExplainResponse{
		Explanation:    s.cfg.Policy.Explain(a),
		EngineVersion:  EngineVersion,
		AssuranceLevel: s.cfg.AssuranceLevel,
	}, nil
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
