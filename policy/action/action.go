package action

import (
	"encoding/json"
	"maps"
	"slices"
)

// SchemaVersion is the only envelope version this engine accepts.
const SchemaVersion = "v1"

// Size limits of the v1 envelope, in bytes.
const (
	MaxBodyBytes    = 64 << 10
	MaxParamsBytes  = 32 << 10
	MaxContextBytes = 8 << 10
)

// Action is a normalized, identity-bound request for one side effect. It is
// built only by New, so every field is already validated and normalized.
type Action struct {
	SchemaVersion string
	ActionID      string
	TraceID       string
	ActionType    string
	// Resource is the normalized resource URI.
	Resource string
	// Params is the canonical JSON of the request params.
	Params json.RawMessage
	// ParamsHash is the sha256 hex of Params.
	ParamsHash string
	// Principal, Agent and Environment come from verified identity and
	// configuration, never from the envelope.
	Principal   string
	Agent       string
	Environment string
	// Extensions is context.extensions of the envelope, kept raw.
	Extensions map[string]json.RawMessage
	// RiskFlags are computed from the action, sorted.
	RiskFlags []string
	// ToolFingerprint is the pinned fingerprint of the MCP tool definition
	// an mcp.call targets, set by the gateway (never from an envelope);
	// empty elsewhere. Rules may require it (tool_fingerprints) and
	// approvals bind to it.
	ToolFingerprint string
	// Fingerprint is the sha256 hex of the canonical normalized action and
	// identity; approvals bind to it.
	Fingerprint string
}

// New validates env, binds it to the verified identity id and normalizes it:
// the resource (errors wrap ErrNormalization), the params into canonical
// JSON, and the derived ParamsHash, RiskFlags and Fingerprint. Envelopes
// built in code get the same checks as decoded ones, so every Action obeys
// the v1 rules whatever front door built it. Other errors wrap ErrValidation.
func New(env *Envelope, id Identity) (*Action, error) {
	const step = "new action"
	if env == nil {
		return nil, validationError(step, "envelope is nil")
	}
	root, p := env.validate(nil)
	if p = append(p, id.problems()...); len(p) > 0 {
		return nil, validationError(step, p...)
	}
	resource, err := NormalizeResource(env.ActionType, env.Resource)
	if err != nil {
		return nil, err
	}
	params := root.canonical()
	a := &Action{
		SchemaVersion: env.SchemaVersion,
		ActionID:      env.ActionID,
		TraceID:       env.TraceID,
		ActionType:    env.ActionType,
		Resource:      resource,
		Params:        params,
		ParamsHash:    SHA256Hex(params),
		Principal:     id.Principal,
		Agent:         id.Agent,
		Environment:   id.Environment,
		Extensions:    cloneExtensions(env.Context.Extensions),
	}
	if env.ActionType == TypeMCPCall {
		a.ToolFingerprint = env.toolFingerprint
	}
	a.RiskFlags = ComputeRiskFlags(a)
	a.Fingerprint = fingerprint(a, params)
	return a, nil
}

// cloneExtensions copies the map and its values so an Action never aliases
// a caller's buffers.
func cloneExtensions(ext map[string]json.RawMessage) map[string]json.RawMessage {
	if ext == nil {
		return nil
	}
	out := maps.Clone(ext)
	for k, v := range out {
		out[k] = slices.Clone(v)
	}
	return out
}
