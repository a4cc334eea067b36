package action

import "bytes"

// Fingerprint is the sha256 hex of the canonical JSON of
//
//	{"normalized_action":{"schema_version","action_type","resource","params"},
//	 "principal","agent","environment"}
//
// It leaves out action_id and trace_id so an agent can retry the same action
// under new ids, and includes the canonical params so any change to them
// needs a new approval. It returns "" only for a nil Action or one not built
// by New whose params are not valid JSON; callers must never match an empty
// fingerprint.
func Fingerprint(a *Action) string {
	if a == nil {
		return ""
	}
	params, err := Canonicalize(a.Params)
	if err != nil {
		return ""
	}
	return fingerprint(a, params)
}

// fingerprint writes the canonical document directly, keys already in
// sorted order, since params is canonical and every other value is a string.
func fingerprint(a *Action, params []byte) string {
	var b bytes.Buffer
	b.Grow(len(params) + len(a.Resource) + 256)
	b.WriteString(`{"agent":`)
	b.Write(marshalString(a.Agent))
	b.WriteString(`,"environment":`)
	b.Write(marshalString(a.Environment))
	b.WriteString(`,"normalized_action":{"action_type":`)
	b.Write(marshalString(a.ActionType))
	b.WriteString(`,"params":`)
	b.Write(params)
	b.WriteString(`,"resource":`)
	b.Write(marshalString(a.Resource))
	b.WriteString(`,"schema_version":`)
	b.Write(marshalString(a.SchemaVersion))
	if a.ToolFingerprint != "" {
		b.WriteString(`,"tool_fingerprint":`)
		b.Write(marshalString(a.ToolFingerprint))
	}
	b.WriteString(`},"principal":`)
	b.Write(marshalString(a.Principal))
	b.WriteString(`}`)
	return SHA256Hex(b.Bytes())
}

// BindToolDefinition records the pinned fingerprint of the MCP tool an
// mcp.call targets and recomputes the action's fingerprint, so policy can
// require a reviewed definition and an approval covers only the definition
// it was granted for.
func (a *Action) BindToolDefinition(toolFingerprint string) {
	a.ToolFingerprint = toolFingerprint
	a.Fingerprint = Fingerprint(a)
}
