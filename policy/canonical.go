package policy

import (
	"encoding/json"

	"github.com/caddy-nomos/nomos/policy/action"
)

// Matcher values are stored as canonical JSON, produced by the one
// canonicalizer (action.CanonicalMarshal) from the decoded tree, so a value
// written in a bundle and the same value in a request compare byte for byte.

// canonicalValue renders one decoded value as canonical JSON. A number
// the JSON grammar does not accept (YAML allows more) is kept as a string.
func canonicalValue(v *value) json.RawMessage {
	b, err := action.CanonicalMarshal(v.plain())
	if err != nil {
		b, _ = action.CanonicalMarshal(v.str)
	}
	return b
}

// plain is v as encoding/json values; numbers keep their exact text.
func (v *value) plain() any {
	switch v.kind {
	case kindBool:
		return v.b
	case kindNumber:
		return json.Number(v.str)
	case kindString:
		return v.str
	case kindArray:
		out := make([]any, len(v.items))
		for i, item := range v.items {
			out[i] = item.plain()
		}
		return out
	case kindObject:
		out := make(map[string]any, len(v.keys))
		for i, k := range v.keys {
			out[k] = v.vals[i].plain()
		}
		return out
	}
	return nil
}

// hashCanonical is the sha256 hex of v's canonical JSON, computed exactly as
// every other Nomos hash is.
func hashCanonical(v any) (string, error) {
	b, err := action.CanonicalMarshal(v)
	if err != nil {
		return "", err
	}
	return action.SHA256Hex(b), nil
}
