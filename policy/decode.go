package policy

import (
	"encoding/json"
	"strconv"
)

// The decoder turns a value tree into a typed Bundle field by field, so every
// unknown field and wrong type is reported with its path. Semantic checks
// (decisions, globs, flags) happen in validate.go.

func decodeBundle(v *value) (*Bundle, error) {
	if err := wantKind(v, kindObject, "$"); err != nil {
		return nil, err
	}
	b := &Bundle{}
	for i, key := range v.keys {
		p, child := childPath("$", key), v.vals[i]
		var err error
		switch key {
		case "version":
			b.Version, err = asString(child, p)
		case "rules":
			b.Rules, err = decodeRules(child, p)
		default:
			err = errAt(p, "unknown field %q", key)
		}
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

func decodeRules(v *value, path string) ([]Rule, error) {
	if err := wantKind(v, kindArray, path); err != nil {
		return nil, err
	}
	rules := make([]Rule, len(v.items))
	for i, item := range v.items {
		if err := decodeRule(item, indexPath(path, i), &rules[i]); err != nil {
			return nil, err
		}
	}
	return rules, nil
}

func decodeRule(v *value, path string, r *Rule) error {
	if err := wantKind(v, kindObject, path); err != nil {
		return err
	}
	for i, key := range v.keys {
		if err := decodeRuleField(r, key, v.vals[i], childPath(path, key)); err != nil {
			return err
		}
	}
	return nil
}

func decodeRuleField(r *Rule, key string, v *value, p string) (err error) {
	switch key {
	case "id":
		r.ID, err = asString(v, p)
	case "action_type":
		r.ActionType, err = asString(v, p)
	case "resource":
		r.Resource, err = asString(v, p)
	case "decision":
		r.Decision, err = asString(v, p)
	case "principals":
		r.Principals, err = asStrings(v, p)
	case "agents":
		r.Agents, err = asStrings(v, p)
	case "environments":
		r.Environments, err = asStrings(v, p)
	case "risk_flags":
		r.RiskFlags, err = asStrings(v, p)
	case "exec_match":
		r.ExecMatch, err = decodeExecMatch(v, p)
	case "tool_fingerprints":
		r.ToolFingerprints, err = asStrings(v, p)
	case "params_match":
		r.ParamsMatch, err = decodeParamsMatch(v, p)
	case "obligations":
		r.Obligations, err = decodeObligations(v, p)
	default:
		err = errAt(p, "unknown field %q", key)
	}
	return err
}

func decodeExecMatch(v *value, path string) (*ExecMatch, error) {
	if v.kind == kindNull {
		return nil, nil
	}
	if err := wantKind(v, kindObject, path); err != nil {
		return nil, err
	}
	m := &ExecMatch{}
	for i, key := range v.keys {
		p := childPath(path, key)
		if key != "argv_patterns" {
			return nil, errAt(p, "unknown field %q", key)
		}
		var err error
		if m.ArgvPatterns, err = asStringLists(v.vals[i], p); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func decodeParamsMatch(v *value, path string) (map[string]Matcher, error) {
	if v.kind == kindNull {
		return nil, nil
	}
	if err := wantKind(v, kindObject, path); err != nil {
		return nil, err
	}
	m := make(map[string]Matcher, len(v.keys))
	for i, key := range v.keys {
		mt, err := decodeMatcher(v.vals[i], childPath(path, key))
		if err != nil {
			return nil, err
		}
		m[key] = mt
	}
	return m, nil
}

// decodeMatcher reads the operator form when given an object and treats any
// other value as `equals`. To compare against an object, write {equals: {...}}.
func decodeMatcher(v *value, path string) (Matcher, error) {
	if v.kind != kindObject {
		return Matcher{Equals: canonicalValue(v)}, nil
	}
	var m Matcher
	for i, key := range v.keys {
		if err := decodeOperator(&m, key, v.vals[i], childPath(path, key)); err != nil {
			return m, err
		}
	}
	return m, nil
}

func decodeOperator(m *Matcher, key string, v *value, p string) (err error) {
	switch key {
	case "equals":
		m.Equals = canonicalValue(v)
	case "in":
		m.In, err = asValueList(v, p)
	case "present":
		m.Present, err = asBoolPtr(v, p)
	case "glob":
		var s string
		s, err = asString(v, p)
		m.Glob = &s
	case "lt", "lte", "gt", "gte":
		err = decodeBound(m, key, v, p)
	default:
		err = errAt(p, "unknown matcher %q (want equals, in, present, glob, lt, lte, gt or gte)", key)
	}
	return err
}

func decodeBound(m *Matcher, key string, v *value, p string) error {
	if v.kind != kindNumber {
		return errAt(p, "%s needs a number, got %s", key, v.kindName())
	}
	n := json.Number(v.str)
	switch key {
	case "lt":
		m.Lt = n
	case "lte":
		m.Lte = n
	case "gt":
		m.Gt = n
	default:
		m.Gte = n
	}
	return nil
}

func asValueList(v *value, path string) ([]json.RawMessage, error) {
	if err := wantKind(v, kindArray, path); err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, len(v.items))
	for i, item := range v.items {
		out[i] = canonicalValue(item)
	}
	return out, nil
}

func decodeObligations(v *value, path string) (*Obligations, error) {
	if v.kind == kindNull {
		return nil, nil
	}
	if err := wantKind(v, kindObject, path); err != nil {
		return nil, err
	}
	o := &Obligations{}
	for i, key := range v.keys {
		if err := decodeObligation(o, key, v.vals[i], childPath(path, key)); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func decodeObligation(o *Obligations, key string, v *value, p string) (err error) {
	switch key {
	case "sandbox_mode":
		o.SandboxMode, err = asString(v, p)
	case "net_allowlist":
		o.NetAllowlist, err = asStrings(v, p)
	case "exec_allowlist":
		o.ExecAllowlist, err = asStringLists(v, p)
	case "exec_write_paths":
		o.ExecWritePaths, err = asStrings(v, p)
	case "http_redirects":
		o.HTTPRedirects, err = asBoolPtr(v, p)
	case "http_redirect_hop_limit":
		var n int64
		n, err = asInt(v, p, 32)
		hop := int(n)
		o.HTTPRedirectHopLimit = &hop
	case "output_max_bytes":
		o.OutputMaxBytes, err = asIntPtr(v, p)
	case "output_max_lines":
		o.OutputMaxLines, err = asIntPtr(v, p)
	case "approval_scope_class":
		o.ApprovalScopeClass, err = asString(v, p)
	case "redact":
		o.Redact, err = asStrings(v, p)
	case "exec_constraints":
		err = errAt(p, "exec_constraints is derived from exec_match and cannot be set")
	default:
		err = errAt(p, "unknown obligation %q", key)
	}
	return err
}

func wantKind(v *value, k kind, path string) error {
	if v.kind != k {
		want := (&value{kind: k}).kindName()
		return errAt(path, "expected %s, got %s", want, v.kindName())
	}
	return nil
}

func asString(v *value, path string) (string, error) {
	if err := wantKind(v, kindString, path); err != nil {
		return "", err
	}
	return v.str, nil
}

// asStrings treats null like an absent list, as encoding/json would.
func asStrings(v *value, path string) ([]string, error) {
	if v.kind == kindNull {
		return nil, nil
	}
	if err := wantKind(v, kindArray, path); err != nil {
		return nil, err
	}
	out := make([]string, len(v.items))
	for i, item := range v.items {
		s, err := asString(item, indexPath(path, i))
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

func asStringLists(v *value, path string) ([][]string, error) {
	if v.kind == kindNull {
		return nil, nil
	}
	if err := wantKind(v, kindArray, path); err != nil {
		return nil, err
	}
	out := make([][]string, len(v.items))
	for i, item := range v.items {
		p := indexPath(path, i)
		if err := wantKind(item, kindArray, p); err != nil {
			return nil, err
		}
		var err error
		if out[i], err = asStrings(item, p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func asBoolPtr(v *value, path string) (*bool, error) {
	if err := wantKind(v, kindBool, path); err != nil {
		return nil, err
	}
	b := v.b
	return &b, nil
}

func asInt(v *value, path string, bits int) (int64, error) {
	if err := wantKind(v, kindNumber, path); err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(v.str, 10, bits)
	if err != nil {
		return 0, errAt(path, "expected an integer, got %s", v.str)
	}
	return n, nil
}

func asIntPtr(v *value, path string) (*int64, error) {
	n, err := asInt(v, path, 64)
	return &n, err
}
