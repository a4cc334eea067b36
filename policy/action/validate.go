package action

import (
	"fmt"
	"slices"
	"strings"
)

// problems lists every value rule of the v1 envelope that env breaks. It is
// shared by DecodeEnvelope and New so an envelope built in code is held to the
// same rules as one decoded from a request.
func (env *Envelope) problems() []string {
	_, p := env.validate(nil)
	return p
}

// validate also returns the parsed params, so New parses them only once.
// parsed, when not nil, is env.Params already parsed by the caller.
func (env *Envelope) validate(parsed *node) (*node, []string) {
	var p []string
	if env.SchemaVersion != SchemaVersion {
		p = append(p, `schema_version must be "v1"`)
	}
	if !ValidID(env.ActionID) {
		p = append(p, "action_id must match "+IDPattern)
	}
	if !validActionType(env.ActionType) {
		p = append(p, `action_type must be dotted lowercase with at least two segments, like "fs.read"`)
	}
	if env.Resource == "" {
		p = append(p, "resource is required")
	}
	params, msg := parseParams(env.Params, parsed)
	if msg != "" {
		p = append(p, msg)
	}
	if !ValidID(env.TraceID) {
		p = append(p, "trace_id must match "+IDPattern)
	}
	return params, append(p, env.Context.problems()...)
}

// parseParams checks that params is one JSON object within its limit, with
// no duplicate key at any depth: canonicalization would otherwise hide which
// of two values the upstream tool will see.
func parseParams(params []byte, root *node) (*node, string) {
	if len(params) > MaxParamsBytes {
		return nil, fmt.Sprintf("params exceeds %d bytes", MaxParamsBytes)
	}
	if len(params) == 0 {
		return nil, "params is required"
	}
	if root == nil {
		var err error
		if root, err = parseStrict(params); err != nil {
			return nil, "params: " + err.Error()
		}
	}
	if root.kind != '{' {
		return nil, "params must be a JSON object"
	}
	return root, ""
}

// problems checks the extensions, in sorted key order so the report is
// deterministic.
func (c Context) problems() []string {
	var p []string
	if n := c.size(); n > MaxContextBytes {
		p = append(p, fmt.Sprintf("context exceeds %d bytes", MaxContextBytes))
	}
	keys := sortedKeys(c.Extensions)
	p = append(p, caseVariants(keys)...)
	for _, k := range keys {
		if msg := extensionProblem(k, c.Extensions[k]); msg != "" {
			p = append(p, msg)
		}
	}
	return p
}

// caseVariants reports extension keys that differ only in case: a consumer
// decoding with encoding/json would take either for the other. Extensions
// are few, so comparing every pair is fine.
func caseVariants(keys []string) []string {
	var p []string
	for i, a := range keys {
		for _, b := range keys[i+1:] {
			if strings.EqualFold(a, b) {
				p = append(p, "context.extensions: keys "+quoteKey(a)+" and "+quoteKey(b)+" differ only in case")
			}
		}
	}
	return p
}

func extensionProblem(key string, raw []byte) string {
	if key == approvalExtension {
		if _, msg := parseApproval(raw); msg != "" {
			return "context.extensions.approval: " + msg
		}
		return ""
	}
	if strings.EqualFold(key, approvalExtension) {
		return "context.extensions: key " + quoteKey(key) + ` must be spelled "approval"`
	}
	if _, err := parseStrict(raw); err != nil {
		return "context.extensions[" + quoteKey(key) + "]: " + err.Error()
	}
	return ""
}

// size approximates the compact size of the context for envelopes built in
// code; decoded envelopes are also checked on their raw bytes.
func (c Context) size() int {
	n := len(`{"extensions":{}}`)
	for k, v := range c.Extensions {
		n += len(k) + len(`"":,`) + len(v)
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// problems checks the identity bound to an action: an empty principal or
// environment would let unrelated callers share fingerprints and approvals.
// The agent may be empty: a route that does not authenticate agents has
// none, and "" never equals a named agent in a rule or a fingerprint.
func (id Identity) problems() []string {
	var p []string
	if id.Principal == "" {
		p = append(p, "principal is required")
	}
	if id.Environment == "" {
		p = append(p, "environment is required")
	}
	return p
}

func (id Identity) problemsIf(check bool) []string {
	if !check {
		return nil
	}
	return id.problems()
}
