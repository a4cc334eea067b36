package action

import "encoding/json"

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
	// Fingerprint is the sha256 hex of the canonical normalized action and
	// identity; approvals bind to it.
	Fingerprint string
}
