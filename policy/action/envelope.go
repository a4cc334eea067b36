package action

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Envelope is the v1 action request as an agent sends it. It carries no
// identity: principal, agent and environment are bound later by New.
type Envelope struct {
	SchemaVersion string          `json:"schema_version"`
	ActionID      string          `json:"action_id"`
	ActionType    string          `json:"action_type"`
	Resource      string          `json:"resource"`
	Params        json.RawMessage `json:"params"`
	TraceID       string          `json:"trace_id"`
	Context       Context         `json:"context"`
	// toolFingerprint is set by a gateway (WithToolDefinition), never
	// decoded: a client cannot name the definition it calls.
	toolFingerprint string
}

// Context is the envelope's context object. Extensions is its only key.
type Context struct {
	// Extensions holds named extension objects, raw. The "approval"
	// extension is read strictly by ApprovalID.
	Extensions map[string]json.RawMessage `json:"extensions,omitempty"`
}

// Identity is who asks, as verified by authentication and configuration.
type Identity struct {
	Principal   string
	Agent       string
	Environment string
}

// envelopeKeys are the v1 envelope keys in the order problems are reported.
func envelopeKeys() []string {
	return []string{"schema_version", "action_id", "action_type", "resource", "params", "trace_id", "context"}
}

// identityKeys are the extra keys of an action file.
func identityKeys() []string {
	return []string{"principal", "agent", "environment"}
}

// DecodeEnvelope strictly decodes a v1 envelope: unknown, duplicate and
// case-variant keys, trailing data, wrong types and values out of limits are
// all refused, with every problem found joined by "; ". Errors wrap
// ErrValidation. The resource is checked only for presence; New normalizes it.
func DecodeEnvelope(body []byte) (*Envelope, error) {
	d := envelopeDecoder{keys: envelopeKeys()}
	if p := d.decode(body); len(p) > 0 {
		return nil, validationError("decode envelope", p...)
	}
	return &d.env, nil
}

// DecodeActionFile decodes the input of `nomos policy test --action` and of
// the UI explain call: an envelope plus required "principal", "agent" and
// "environment" strings (the agent may be "", as in New), with the same
// strictness as DecodeEnvelope. It is
// meant for operators' tools only; a network front door must use
// DecodeEnvelope so identity never comes from the request.
func DecodeActionFile(body []byte) (*Envelope, Identity, error) {
	d := envelopeDecoder{keys: append(envelopeKeys(), identityKeys()...), withIdentity: true}
	if p := d.decode(body); len(p) > 0 {
		return nil, Identity{}, validationError("decode action file", p...)
	}
	return &d.env, d.id, nil
}

// envelopeDecoder collects every problem of one body instead of stopping at
// the first, so a client sees them all.
type envelopeDecoder struct {
	keys         []string
	withIdentity bool
	env          Envelope
	params       *node // the params member, parsed with the body
	id           Identity
	seen         []string
	problems     []string
}

func (d *envelopeDecoder) decode(body []byte) []string {
	if len(body) > MaxBodyBytes {
		return []string{fmt.Sprintf("body exceeds %d bytes", MaxBodyBytes)}
	}
	fields, err := readFields(body)
	if err == errNotObject {
		return []string{"body must be a JSON object"}
	}
	if err != nil {
		return []string{"body: " + err.Error()}
	}
	for _, f := range fields {
		d.field(f)
	}
	d.requireAll()
	if len(d.problems) > 0 {
		return d.problems
	}
	// Value checks run only on a structurally sound body, so a missing field
	// is not reported a second time as an invalid one.
	_, d.problems = d.env.validate(d.params)
	d.problems = append(d.problems, d.id.problemsIf(d.withIdentity)...)
	return d.problems
}

func (d *envelopeDecoder) field(f field) {
	if !slices.Contains(d.keys, f.key) {
		d.problems = append(d.problems, unknownField(f.key, d.keys))
		return
	}
	d.seen = append(d.seen, f.key)
	switch f.key {
	case "params":
		d.env.Params, d.params = slices.Clone(f.raw), f.val
	case "context":
		d.context(f)
	default:
		d.stringField(f)
	}
}

// stringField stores one of the string-valued keys.
func (d *envelopeDecoder) stringField(f field) {
	var s string
	if !isJSONString(f.raw) || json.Unmarshal(f.raw, &s) != nil {
		d.problems = append(d.problems, f.key+" must be a string")
		return
	}
	*d.target(f.key) = s
}

// target is where a string-valued key is stored; keys were checked against
// d.keys before, so every caller passes one of these.
func (d *envelopeDecoder) target(key string) *string {
	switch key {
	case "schema_version":
		return &d.env.SchemaVersion
	case "action_id":
		return &d.env.ActionID
	case "action_type":
		return &d.env.ActionType
	case "resource":
		return &d.env.Resource
	case "trace_id":
		return &d.env.TraceID
	case "principal":
		return &d.id.Principal
	case "agent":
		return &d.id.Agent
	}
	return &d.id.Environment
}

func (d *envelopeDecoder) requireAll() {
	for _, k := range d.keys {
		if !slices.Contains(d.seen, k) {
			d.problems = append(d.problems, "missing field "+quoteKey(k))
		}
	}
}

// context decodes the context object, whose only key is "extensions".
func (d *envelopeDecoder) context(c field) {
	members, err := c.val.fields()
	if err != nil {
		d.problems = append(d.problems, "context must be a JSON object")
		return
	}
	if len(c.raw) > MaxContextBytes {
		d.problems = append(d.problems, fmt.Sprintf("context exceeds %d bytes", MaxContextBytes))
		return
	}
	for _, f := range members {
		if f.key != "extensions" {
			d.problems = append(d.problems, "context: "+unknownField(f.key, []string{"extensions"}))
			continue
		}
		d.extensions(f)
	}
}

func (d *envelopeDecoder) extensions(e field) {
	members, err := e.val.fields()
	if err != nil {
		d.problems = append(d.problems, "context.extensions must be a JSON object")
		return
	}
	d.env.Context.Extensions = make(map[string]json.RawMessage, len(members))
	for _, f := range members {
		d.env.Context.Extensions[f.key] = slices.Clone(f.raw)
	}
}

// unknownField names a key that is not allowed. A case variant of a known key
// gets its own message: encoding/json would have accepted it as an alias.
func unknownField(key string, known []string) string {
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return fmt.Sprintf("field %s must be spelled %q", quoteKey(key), k)
		}
	}
	return "unknown field " + quoteKey(key)
}
