package action

import "encoding/json"

// fingerprintInput is the document an approval binds to. It leaves out
// action_id and trace_id so an agent can retry the same action under new ids,
// and includes the canonical params so any change to them needs a new
// approval.
type fingerprintInput struct {
	NormalizedAction normalizedAction `json:"normalized_action"`
	Principal        string           `json:"principal"`
	Agent            string           `json:"agent"`
	Environment      string           `json:"environment"`
}

type normalizedAction struct {
	SchemaVersion string          `json:"schema_version"`
	ActionType    string          `json:"action_type"`
	Resource      string          `json:"resource"`
	Params        json.RawMessage `json:"params"`
}

// Fingerprint is the sha256 hex of the canonical JSON of
// {"normalized_action":{schema_version, action_type, resource, params},
// "principal", "agent", "environment"}. It returns "" only for an Action not
// built by New whose params are not valid JSON; callers must never match an
// empty fingerprint.
func Fingerprint(a *Action) string {
	b, err := CanonicalMarshal(fingerprintInput{
		NormalizedAction: normalizedAction{
			SchemaVersion: a.SchemaVersion,
			ActionType:    a.ActionType,
			Resource:      a.Resource,
			Params:        a.Params,
		},
		Principal:   a.Principal,
		Agent:       a.Agent,
		Environment: a.Environment,
	})
	if err != nil {
		return ""
	}
	return SHA256Hex(b)
}
