package executor

import (
	"bytes"
	"encoding/json"
	"fmt"

	"maps"
	"slices"

	"github.com/caddy-nomos/nomos/policy/action"
)

// field is one accepted params key and where its value goes.
type field struct {
	name     string
	dst      any
	required bool
}

// decodeParams decodes a params object strictly: keys match exactly (unlike
// encoding/json, which would let "ARGV" fill argv while policy looked at
// "argv"), unknown or repeated keys and null values are refused, and
// required keys must be present.
func decodeParams(raw json.RawMessage, fields ...field) *Error {
	values, err := objectMembers(raw)
	if err != nil {
		return fail(CodeInvalidParams, "params: %v", err)
	}
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if !hasField(fields, name) {
			return fail(CodeInvalidParams, "params: unknown key %q", name)
		}
	}
	for _, f := range fields {
		if err := decodeField(values, f); err != nil {
			return err
		}
	}
	return nil
}

func hasField(fields []field, name string) bool {
	for _, f := range fields {
		if f.name == name {
			return true
		}
	}
	return false
}

func decodeField(values map[string]json.RawMessage, f field) *Error {
	v, ok := values[f.name]
	switch {
	case !ok && f.required:
		return fail(CodeInvalidParams, "params: %s is required", f.name)
	case !ok:
		return nil
	case string(v) == "null":
		return fail(CodeInvalidParams, "params: %s must not be null", f.name)
	}
	if err := json.Unmarshal(v, f.dst); err != nil {
		return fail(CodeInvalidParams, "params: %s: %v", f.name, err)
	}
	return nil
}

// objectMembers splits a JSON object into its members, refusing repeated
// and case-variant keys at any depth (action.CheckStrictJSON). Empty params
// count as an empty object.
func objectMembers(raw json.RawMessage) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(raw)) == 0 {
		return out, nil
	}
	if err := action.CheckStrictJSON(raw); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &out); err != nil || out == nil {
		return nil, fmt.Errorf("must be a json object")
	}
	return out, nil
}
