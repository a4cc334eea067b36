package policy

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestObligationMerge loads rules that all match one fs.read action and
// checks the merged obligations of the winning class.
func TestObligationMerge(t *testing.T) {
	tests := []struct {
		name  string
		obs   []string // obligations of each matching rule, as YAML flow maps
		class string
		want  string // merged obligations, JSON
	}{
		{"single rule is kept", []string{`{sandbox_mode: local, output_max_bytes: 10}`}, Allow,
			`{"sandbox_mode":"local","output_max_bytes":10}`},
		{"strongest sandbox", []string{`{sandbox_mode: none}`, `{sandbox_mode: container}`, `{sandbox_mode: local}`}, Allow,
			`{"sandbox_mode":"container"}`},
		{"smallest caps", []string{`{output_max_bytes: 100, output_max_lines: 5}`, `{output_max_bytes: 50}`, `{}`}, Allow,
			`{"output_max_bytes":50,"output_max_lines":5}`},
		{"smallest hop limit", []string{`{http_redirect_hop_limit: 3}`, `{http_redirect_hop_limit: 1}`}, Allow,
			`{"http_redirect_hop_limit":1}`},
		{"net allowlist intersection", []string{`{net_allowlist: [a.com, b.com, c.com]}`, `{net_allowlist: [c.com, b.com]}`}, Allow,
			`{"net_allowlist":["b.com","c.com"]}`},
		{"unset allowlist does not widen", []string{`{net_allowlist: [a.com]}`, `{}`}, Allow,
			`{"net_allowlist":["a.com"]}`},
		{"disjoint net allowlists allow nothing", []string{`{net_allowlist: [a.com]}`, `{net_allowlist: [b.com]}`}, Allow,
			`{}`},
		{"exec prefixes intersect as languages", []string{`{exec_allowlist: [[git], [npm, test]]}`, `{exec_allowlist: [[git, status], [npm]]}`}, Allow,
			`{"exec_allowlist":[["git","status"],["npm","test"]]}`},
		{"redirects need every rule", []string{`{http_redirects: true}`, `{http_redirects: true}`}, Allow,
			`{"http_redirects":true}`},
		{"an unset redirect vetoes", []string{`{http_redirects: true}`, `{}`}, Allow,
			`{"http_redirects":false}`},
		{"a false redirect vetoes", []string{`{http_redirects: true}`, `{http_redirects: false}`}, Allow,
			`{"http_redirects":false}`},
		{"redact union", []string{`{redact: [b, a]}`, `{redact: [c, a]}`}, Allow,
			`{"redact":["a","b","c"]}`},
		{"scope class needs every approval rule", []string{`{approval_scope_class: action_type_resource}`, `{}`}, RequireApproval,
			`{}`},
		{"scope class kept when unanimous", []string{`{approval_scope_class: action_type_resource}`, `{approval_scope_class: action_type_resource}`}, RequireApproval,
			`{"approval_scope_class":"action_type_resource"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			b.WriteString("version: v1\nrules:\n")
			for i, ob := range tt.obs {
				b.WriteString("  - {id: r" + string(rune('a'+i)) + ", action_type: fs.read, resource: 'file://workspace/**', decision: " + tt.class + ", obligations: " + ob + "}\n")
			}
			d := mustLoad(t, "m.yaml", b.String()).Evaluate(act(t, "fs.read", "file://workspace/a.txt", ""))
			if d.Decision != tt.class {
				t.Fatalf("decision %s", d.Decision)
			}
			got, _ := json.Marshal(d.Obligations)
			if string(got) != tt.want {
				t.Errorf("merged %s, want %s", got, tt.want)
			}
		})
	}
}

// TestObligationsOnlyFromWinningClass: a matching ALLOW rule's obligations
// do not leak into a REQUIRE_APPROVAL decision, and a DENY carries none.
func TestObligationsOnlyFromWinningClass(t *testing.T) {
	e := mustLoad(t, "w.yaml", `version: v1
rules:
  - {id: allow, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW, obligations: {output_max_bytes: 5}}
  - {id: approve, action_type: fs.read, resource: 'file://workspace/**', decision: REQUIRE_APPROVAL, obligations: {sandbox_mode: local}}
  - {id: deny, action_type: fs.read, resource: 'file://workspace/secret/**', decision: DENY, obligations: {sandbox_mode: container}}
`)
	d := e.Evaluate(act(t, "fs.read", "file://workspace/a", ""))
	if got, _ := json.Marshal(d.Obligations); string(got) != `{"sandbox_mode":"local"}` {
		t.Errorf("approval obligations %s", got)
	}
	d = e.Evaluate(act(t, "fs.read", "file://workspace/secret/a", ""))
	if got, _ := json.Marshal(d.Obligations); string(got) != `{}` {
		t.Errorf("deny obligations %s", got)
	}
}

func TestExecConstraintsDerived(t *testing.T) {
	e := mustLoad(t, "x.yaml", `version: v1
rules:
  - {id: a, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[git, status, '**'], [git, log]]}}
  - {id: b, action_type: '*', resource: '**', decision: ALLOW, exec_match: {argv_patterns: [[git, '**'], [git, status, '**']]}}
`)
	d := e.Evaluate(act(t, "process.exec", "file://workspace/repo", `{"argv":["git","status"]}`))
	checkDecision(t, d, Allow, ReasonAllowByRule, "a", "b")
	got, _ := json.Marshal(d.Obligations.ExecConstraints)
	if string(got) != `{"argv_patterns":[["git","**"],["git","log"],["git","status","**"]]}` {
		t.Errorf("exec_constraints %s", got)
	}
}

func TestMergeDoesNotMutateCompiledRules(t *testing.T) {
	e := mustLoad(t, "x.yaml", `version: v1
rules:
  - {id: a, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW, obligations: {redact: [x], net_allowlist: [a.com, b.com]}}
  - {id: b, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW, obligations: {redact: [y], net_allowlist: [b.com]}}
`)
	for i := 0; i < 3; i++ {
		d := e.Evaluate(act(t, "fs.read", "file://workspace/f", ""))
		if ids(d.Obligations.Redact...) != "x,y" || ids(d.Obligations.NetAllowlist...) != "b.com" {
			t.Fatalf("round %d: %+v", i, d.Obligations)
		}
	}
	if r := e.Rules(); ids(r[0].Obligations.NetAllowlist...) != "a.com,b.com" {
		t.Errorf("rule obligations changed: %v", r[0].Obligations.NetAllowlist)
	}
}
