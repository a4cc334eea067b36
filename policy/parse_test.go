package policy

import (
	"errors"
	"strings"
	"testing"
)

const sampleYAML = `version: v1
rules:
  - id: allow-read
    action_type: fs.read
    resource: file://workspace/**
    decision: ALLOW
    principals: [alice, bob]
    obligations:
      output_max_bytes: 65536
      redact: ["token=\\S+"]
  - id: refund
    action_type: mcp.call
    resource: mcp://retail/refund_order
    decision: ALLOW
    params_match:
      tool_arguments.amount: {lte: 100.50}
      tool_arguments.currency: {in: [USD, EUR]}
      tool_arguments.note: refund
  - id: git
    action_type: process.exec
    resource: "file://workspace/**"
    decision: ALLOW
    exec_match:
      argv_patterns: [[git, status, "**"]]
`

const sampleJSON = `{"version":"v1","rules":[
 {"id":"allow-read","action_type":"fs.read","resource":"file://workspace/**","decision":"ALLOW",
  "principals":["alice","bob"],"obligations":{"output_max_bytes":65536,"redact":["token=\\S+"]}},
 {"id":"refund","action_type":"mcp.call","resource":"mcp://retail/refund_order","decision":"ALLOW",
  "params_match":{"tool_arguments.amount":{"lte":100.50},"tool_arguments.currency":{"in":["USD","EUR"]},
  "tool_arguments.note":{"equals":"refund"}}},
 {"id":"git","action_type":"process.exec","resource":"file://workspace/**","decision":"ALLOW",
  "exec_match":{"argv_patterns":[["git","status","**"]]}}]}`

func TestParseBundleYAMLAndJSONHashAlike(t *testing.T) {
	by, hy, err := ParseBundle("b.yaml", []byte(sampleYAML))
	if err != nil {
		t.Fatal(err)
	}
	_, hj, err := ParseBundle("b.json", []byte(sampleJSON))
	if err != nil {
		t.Fatal(err)
	}
	if hy != hj || len(hy) != 64 {
		t.Fatalf("yaml hash %s != json hash %s", hy, hj)
	}
	if got := string(by.Rules[1].ParamsMatch["tool_arguments.note"].Equals); got != `"refund"` {
		t.Errorf("plain value should become equals, got %s", got)
	}
	if got := by.Rules[1].ParamsMatch["tool_arguments.amount"].Lte; got != "100.50" {
		t.Errorf("numeric bound should keep its exact text, got %q", got)
	}
}

func TestParseBundleHashIgnoresFormattingButNotContent(t *testing.T) {
	_, h1, _ := ParseBundle("a.yaml", []byte(sampleYAML))
	_, h2, _ := ParseBundle("a.yml", []byte("# comment\n"+sampleYAML))
	_, h3, _ := ParseBundle("a.yaml", []byte(strings.Replace(sampleYAML, "65536", "65535", 1)))
	if h1 != h2 {
		t.Error("a comment changed the hash")
	}
	if h1 == h3 {
		t.Error("a changed cap did not change the hash")
	}
}

func TestParseBundleErrors(t *testing.T) {
	rule := "  - {id: r1, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW}\n"
	tests := []struct {
		name, path, data, want string
	}{
		{"unknown top field", "x.yaml", "version: v1\nextra: 1\nrules:\n" + rule, `bundle x.yaml: $.extra: unknown field "extra"`},
		{"unknown rule field", "x.yaml", "version: v1\nrules:\n  - {id: r1, action_type: fs.read, resource: x, decision: ALLOW, priority: 1}\n", `$.rules[0].priority: unknown field "priority"`},
		{"duplicate yaml key", "x.yaml", "version: v1\nversion: v1\nrules:\n" + rule, `$: duplicate yaml key "version"`},
		{"duplicate yaml key in rule", "x.yaml", "version: v1\nrules:\n  - {id: r1, id: r2, action_type: fs.read, resource: x, decision: ALLOW}\n", `$.rules[0]: duplicate yaml key "id"`},
		{"duplicate json key", "x.json", `{"version":"v1","rules":[{"id":"a","id":"b"}]}`, `$.rules[0]: duplicate json key "id"`},
		{"trailing yaml document", "x.yaml", "version: v1\nrules:\n" + rule + "---\nversion: v1\n", "trailing YAML document"},
		{"trailing json", "x.json", `{"version":"v1","rules":[]} {}`, "trailing data"},
		{"bad version", "x.yaml", "version: v2\nrules:\n" + rule, `$.version: unsupported version "v2"`},
		{"numeric version", "x.yaml", "version: 1\nrules:\n" + rule, `$.version: expected string, got number`},
		{"no rules", "x.yaml", "version: v1\nrules: []\n", "$.rules: at least one rule is required"},
		{"unknown decision", "examples/x.yaml", "version: v1\nrules:\n" + rule + rule + "  - {id: r3, action_type: fs.read, resource: x, decision: MAYBE}\n", `bundle examples/x.yaml: $.rules[2].decision: unknown decision "MAYBE"`},
		{"duplicate id", "x.yaml", "version: v1\nrules:\n" + rule + rule, `$.rules[1].id: duplicate rule id "r1" (first at $.rules[0])`},
		{"missing id", "x.yaml", "version: v1\nrules:\n  - {action_type: fs.read, resource: x, decision: ALLOW}\n", "$.rules[0].id: required"},
		{"bad id", "x.yaml", "version: v1\nrules:\n  - {id: 'a b', action_type: fs.read, resource: x, decision: ALLOW}\n", `invalid rule id "a b"`},
		{"bad action type", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: Read, resource: x, decision: ALLOW}\n", `$.rules[0].action_type: invalid action type "Read"`},
		{"empty resource", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: '', decision: ALLOW}\n", "$.rules[0].resource: invalid glob"},
		{"backslash resource", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: 'file://workspace\\\\x', decision: ALLOW}\n", "backslash"},
		{"unknown risk flag", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: x, decision: ALLOW, risk_flags: [risk.exe]}\n", `$.rules[0].risk_flags[0]: unknown risk flag "risk.exe"`},
		{"empty principal", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: x, decision: ALLOW, principals: ['']}\n", "$.rules[0].principals[0]: must not be empty"},
		{"exec_match on fs.read", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: x, decision: ALLOW, exec_match: {argv_patterns: [[ls]]}}\n", "$.rules[0].exec_match: exec_match requires action_type process.exec"},
		{"exec_match and exec_allowlist", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: process.exec, resource: x, decision: ALLOW, exec_match: {argv_patterns: [[ls]]}, obligations: {exec_allowlist: [[ls]]}}\n", "cannot carry both exec_match and the exec_allowlist"},
		{"empty argv pattern", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: process.exec, resource: x, decision: ALLOW, exec_match: {argv_patterns: [[]]}}\n", "$.rules[0].exec_match.argv_patterns[0]: a pattern needs at least one token"},
		{"no argv patterns", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: process.exec, resource: x, decision: ALLOW, exec_match: {argv_patterns: []}}\n", "at least one pattern is required"},
		{"empty argv token", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: process.exec, resource: x, decision: ALLOW, exec_match: {argv_patterns: [[git, '']]}}\n", "$.rules[0].exec_match.argv_patterns[0][1]: tokens must not be empty"},
		{"unknown exec_match field", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: process.exec, resource: x, decision: ALLOW, exec_match: {program: ls}}\n", `$.rules[0].exec_match.program: unknown field "program"`},
		{"unknown matcher", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: mcp.call, resource: x, decision: ALLOW, params_match: {a.b: {regex: x}}}\n", `$.rules[0].params_match["a.b"].regex: unknown matcher "regex"`},
		{"empty matcher", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: mcp.call, resource: x, decision: ALLOW, params_match: {a: {}}}\n", "$.rules[0].params_match.a: a matcher needs at least one operator"},
		{"empty path segment", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: mcp.call, resource: x, decision: ALLOW, params_match: {a..b: 1}}\n", `params_match["a..b"]: empty segment`},
		{"string bound", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: mcp.call, resource: x, decision: ALLOW, params_match: {a: {gt: '100'}}}\n", "$.rules[0].params_match.a.gt: gt needs a number, got string"},
		{"empty in", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: mcp.call, resource: x, decision: ALLOW, params_match: {a: {in: []}}}\n", "$.rules[0].params_match.a.in: must list at least one value"},
		{"present not bool", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: mcp.call, resource: x, decision: ALLOW, params_match: {a: {present: yes}}}\n", "$.rules[0].params_match.a.present: expected boolean, got string"},
		{"unknown obligation", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: x, decision: ALLOW, obligations: {sandbox: local}}\n", `$.rules[0].obligations.sandbox: unknown obligation "sandbox"`},
		{"derived obligation", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: x, decision: ALLOW, obligations: {exec_constraints: {}}}\n", "exec_constraints is derived"},
		{"bad sandbox", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: x, decision: ALLOW, obligations: {sandbox_mode: vm}}\n", `$.rules[0].obligations.sandbox_mode: unknown sandbox mode "vm"`},
		{"bad scope class", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: x, decision: ALLOW, obligations: {approval_scope_class: global}}\n", "unknown scope class"},
		{"negative cap", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: x, decision: ALLOW, obligations: {output_max_bytes: 0}}\n", "$.rules[0].obligations.output_max_bytes: must be positive"},
		{"fractional cap", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: x, decision: ALLOW, obligations: {output_max_lines: 1.5}}\n", "expected an integer"},
		{"hop limit range", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: x, decision: ALLOW, obligations: {http_redirect_hop_limit: 99}}\n", "must be between 0 and 20"},
		{"bad net host", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: x, decision: ALLOW, obligations: {net_allowlist: ['https://x.com']}}\n", "$.rules[0].obligations.net_allowlist[0]: want a lowercase host"},
		{"empty redact", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: fs.read, resource: x, decision: ALLOW, obligations: {redact: ['']}}\n", "$.rules[0].obligations.redact[0]: must not be empty"},
		{"empty exec allowlist entry", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: process.exec, resource: x, decision: ALLOW, obligations: {exec_allowlist: [[]]}}\n", "exec_allowlist[0]: a pattern needs"},
		{"yaml alias", "x.yaml", "version: v1\nrules:\n  - &r {id: a, action_type: fs.read, resource: x, decision: ALLOW}\n  - *r\n", "yaml aliases are not supported"},
		{"yaml non-string key", "x.yaml", "version: v1\nrules:\n  - {1: a}\n", "mapping keys must be strings"},
		{"yaml binary", "x.yaml", "version: !!binary aGVsbG8=\nrules: []\n", "unsupported yaml tag"},
		{"yaml infinity", "x.yaml", "version: v1\nrules:\n  - {id: a, action_type: mcp.call, resource: x, decision: ALLOW, params_match: {a: {gt: .inf}}}\n", "unsupported number"},
		{"rules not a list", "x.yaml", "version: v1\nrules: {}\n", "$.rules: expected array, got object"},
		{"rule not an object", "x.yaml", "version: v1\nrules: [1]\n", "$.rules[0]: expected object, got number"},
		{"invalid json", "x.json", `{"version":`, "invalid JSON"},
		{"invalid yaml", "x.yaml", "version: [v1\n", "invalid YAML"},
		{"empty yaml", "x.yaml", "", "empty document"},
		{"top-level array", "x.json", `[]`, "$: expected object, got array"},
		{"deep nesting", "x.json", `{"version":"v1","rules":[{"id":"a","action_type":"mcp.call","resource":"x","decision":"ALLOW","params_match":{"a":{"equals":` + strings.Repeat("[", 80) + strings.Repeat("]", 80) + `}}}]}`, "nesting deeper than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParseBundle(tt.path, []byte(tt.data))
			if err == nil {
				t.Fatalf("accepted; want error containing %q", tt.want)
			}
			if !errors.Is(err, ErrBundle) {
				t.Errorf("error %v does not wrap ErrBundle", err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "bundle "+tt.path+": ") {
				t.Errorf("error %q, want it to name %s and contain %q", err, tt.path, tt.want)
			}
		})
	}
}

func TestParseBundleAcceptsNullsAndYAMLNumberSpellings(t *testing.T) {
	data := "version: v1\nrules:\n  - id: a\n    action_type: mcp.call\n    resource: 'mcp://s/t'\n    decision: ALLOW\n    principals: ~\n    params_match:\n      a: {gte: +1., lt: .5e3}\n      b: 0x10\n"
	b, _, err := ParseBundle("x.yaml", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	m := b.Rules[0].ParamsMatch
	if m["a"].Gte != "1.0" || m["a"].Lt != "0.5e3" || string(m["b"].Equals) != "16" {
		t.Errorf("got gte %q lt %q equals %s", m["a"].Gte, m["a"].Lt, m["b"].Equals)
	}
}

func TestParseBundleRejectsOversizedInput(t *testing.T) {
	_, _, err := ParseBundle("x.json", make([]byte, maxBundleBytes+1))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("got %v", err)
	}
}
