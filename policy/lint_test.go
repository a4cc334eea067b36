package policy

import (
	"fmt"
	"strings"
	"testing"
)

func lintOf(t *testing.T, env, data string) []Finding {
	t.Helper()
	e, err := Load([]BundleSource{{Path: "l.yaml", Data: []byte(data)}}, LoadOptions{Environment: env})
	if err != nil {
		t.Fatal(err)
	}
	return Lint(e)
}

func findingKeys(fs []Finding) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Severity+":"+f.Code+":"+f.RuleID)
	}
	return strings.Join(out, " ")
}

func TestLint(t *testing.T) {
	tests := []struct {
		name  string
		env   string
		rules string
		want  string
	}{
		{"clean", "", `
  - {id: a, action_type: fs.read, resource: 'file://workspace/src/**', decision: ALLOW}
  - {id: b, action_type: fs.read, resource: 'file://workspace/docs/**', decision: ALLOW}`, ""},
		{"shadowed by broader glob", "", `
  - {id: broad, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW}
  - {id: narrow, action_type: fs.read, resource: 'file://workspace/src/*.go', decision: ALLOW}`, "warning:shadowed_rule:narrow"},
		{"shadowed by any type", "", `
  - {id: narrow, action_type: fs.write, resource: 'file://workspace/a/**/*.pem', decision: DENY, principals: [bob]}
  - {id: broad, action_type: '*', resource: 'file://workspace/**/*.pem', decision: DENY}`, "warning:shadowed_rule:narrow"},
		{"equivalent rules: later reported", "", `
  - {id: z-first, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW}
  - {id: a-second, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW}`, "warning:shadowed_rule:a-second"},
		{"obligations keep a rule", "", `
  - {id: broad, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW}
  - {id: capped, action_type: fs.read, resource: 'file://workspace/big/**', decision: ALLOW, obligations: {output_max_bytes: 10}}`, ""},
		{"narrower principals not shadowing", "", `
  - {id: alice, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW, principals: [alice]}
  - {id: any, action_type: fs.read, resource: 'file://workspace/src/**', decision: ALLOW}`, ""},
		{"params must be implied", "", `
  - {id: small, action_type: mcp.call, resource: 'mcp://r/refund', decision: ALLOW, params_match: {amount: {lte: 100}}}
  - {id: any, action_type: mcp.call, resource: 'mcp://r/refund', decision: ALLOW, params_match: {amount: {lte: 100}, currency: USD}}`, "warning:shadowed_rule:any"},
		{"exec patterns covered", "", `
  - {id: git, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[git, '**']]}}
  - {id: status, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[git, status, '*']]}}`, "warning:risky_exec_wildcard:git warning:shadowed_rule:status"},
		{"operand wildcard does not cover an option", "", `
  - {id: log, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[git, log, '**']]}}
  - {id: oneline, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[git, log, --oneline]]}}`, ""},
		{"option wildcard covers an option", "", `
  - {id: ls, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[ls, '-**']]}}
  - {id: ls-l, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[ls, -l, '*']]}}`, "warning:shadowed_rule:ls-l"},
		{"deny wildcard covers options", "", `
  - {id: push, action_type: process.exec, resource: '**', decision: DENY, exec_match: {argv_patterns: [[git, push, '**']]}}
  - {id: force, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[git, push, --force]]}}`, "warning:allow_covered_by_deny:force"},
		{"risky exec wildcards", "", `
  - {id: git-opts, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[git, log, '-**']]}}
  - {id: git-abs, action_type: process.exec, resource: 'file://workspace/a/**', decision: ALLOW, exec_match: {argv_patterns: [[/usr/bin/git, '*', x]]}}
  - {id: py, action_type: process.exec, resource: 'file://workspace/b/**', decision: REQUIRE_APPROVAL, exec_match: {argv_patterns: [[python3, '*']]}}
  - {id: any-program, action_type: process.exec, resource: 'file://workspace/c/**', decision: ALLOW, exec_match: {argv_patterns: [['*', '**']]}}
  - {id: find-opts, action_type: process.exec, resource: 'file://workspace/d/**', decision: ALLOW, exec_match: {argv_patterns: [[find, ., '-*', '*']]}}`, "warning:risky_exec_wildcard:git-opts warning:risky_exec_wildcard:git-abs warning:risky_exec_wildcard:py warning:risky_exec_wildcard:any-program warning:risky_exec_wildcard:find-opts"},
		{"safe exec wildcards", "", `
  - {id: git-log, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[git, log, '**'], [git, status, --short]]}}
  - {id: ls, action_type: process.exec, resource: 'file://workspace/a/**', decision: ALLOW, exec_match: {argv_patterns: [[ls, '-**']]}}
  - {id: no-shells, action_type: process.exec, resource: '**', decision: DENY, exec_match: {argv_patterns: [[sh, '-**'], [git, push, '**']]}}`, ""},
		{"exec patterns not covered", "", `
  - {id: git, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[git, status]]}}
  - {id: status, action_type: process.exec, resource: 'file://workspace/**', decision: ALLOW, exec_match: {argv_patterns: [[git, status, '*']]}}`, ""},
		{"unanimous obligations keep a rule", "", `
  - {id: redirects, action_type: net.http_request, resource: 'url://a.com/**', decision: ALLOW, obligations: {http_redirects: true}}
  - {id: plain, action_type: net.http_request, resource: 'url://a.com/x', decision: ALLOW}`, ""},
		{"allow covered by deny", "", `
  - {id: read-keys, action_type: fs.read, resource: 'file://workspace/keys/*.pem', decision: ALLOW}
  - {id: deny-pem, action_type: '*', resource: 'file://workspace/**/*.pem', decision: DENY}`, "warning:allow_covered_by_deny:read-keys"},
		{"approval covered by deny", "", `
  - {id: push, action_type: process.exec, resource: '**', decision: REQUIRE_APPROVAL, exec_match: {argv_patterns: [[git, push, '**']]}}
  - {id: no-push, action_type: process.exec, resource: '**', decision: DENY, exec_match: {argv_patterns: [[git, push, '**']]}}`, "warning:allow_covered_by_deny:push"},
		{"risk implied by type", "", `
  - {id: w, action_type: fs.write, resource: 'file://workspace/**', decision: ALLOW}
  - {id: no-writes, action_type: '*', resource: '**', decision: DENY, risk_flags: [risk.write]}`, "warning:allow_covered_by_deny:w"},
		{"partial deny is fine", "", `
  - {id: read, action_type: fs.read, resource: 'file://workspace/**', decision: ALLOW}
  - {id: deny-pem, action_type: '*', resource: 'file://workspace/**/*.pem', decision: DENY}`, ""},
		{"impossible risk flag", "", `
  - {id: r, action_type: fs.read, resource: '**', decision: DENY, risk_flags: [risk.exec]}`, "warning:never_matches:r"},
		{"two type flags", "", `
  - {id: r, action_type: '*', resource: '**', decision: DENY, risk_flags: [risk.exec, risk.net]}`, "warning:never_matches:r"},
		{"large io is possible anywhere", "", `
  - {id: r, action_type: mcp.call, resource: '**', decision: DENY, risk_flags: [risk.large_io]}`, ""},
		{"environment excluded", "prod", `
  - {id: r, action_type: fs.read, resource: '**', decision: ALLOW, environments: [dev, local]}`, "warning:never_matches:r"},
		{"environment included", "dev", `
  - {id: r, action_type: fs.read, resource: '**', decision: ALLOW, environments: [dev, local]}`, ""},
		{"mcp type on file scheme", "", `
  - {id: r, action_type: mcp.call, resource: 'file://workspace/**', decision: ALLOW}`, "warning:never_matches:r"},
		{"built-in type on custom scheme", "", `
  - {id: r, action_type: fs.read, resource: 'payments://x/**', decision: ALLOW}`, "warning:never_matches:r"},
		{"uppercase scheme", "", `
  - {id: r, action_type: payments.refund, resource: 'Payments://x/**', decision: ALLOW}`, "warning:never_matches:r"},
		{"dot segment", "", `
  - {id: r, action_type: fs.read, resource: 'file://workspace/../**', decision: DENY}`, "warning:never_matches:r"},
		{"absent and compared", "", `
  - {id: r, action_type: mcp.call, resource: '**', decision: ALLOW, params_match: {a: {present: false, equals: 1}}}`, "warning:never_matches:r"},
		{"empty range", "", `
  - {id: r, action_type: mcp.call, resource: '**', decision: ALLOW, params_match: {a: {gt: 10, lt: 5}}}
  - {id: s, action_type: mcp.call, resource: '**', decision: ALLOW, params_match: {a: {gte: 5, lt: 5}}}
  - {id: ok, action_type: mcp.call, resource: '**', decision: ALLOW, params_match: {a: {gte: 5, lte: 5}}}`, "warning:never_matches:r warning:never_matches:s"},
		{"a never-matching rule shadows nothing", "prod", `
  - {id: dev-all, action_type: fs.read, resource: '**', decision: ALLOW, environments: [dev]}
  - {id: src, action_type: fs.read, resource: 'file://workspace/src/**', decision: ALLOW}`, "warning:never_matches:dev-all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lintOf(t, tt.env, "version: v1\nrules:"+tt.rules+"\n")
			if findingKeys(got) != tt.want {
				t.Errorf("got %q, want %q\n%+v", findingKeys(got), tt.want, got)
			}
			for _, f := range got {
				if !strings.Contains(f.Message, fmt.Sprintf("%q", f.RuleID)) {
					t.Errorf("message does not name the rule: %s", f.Message)
				}
			}
		})
	}
}

func TestLintSourcesDuplicates(t *testing.T) {
	srcs := []BundleSource{
		{Path: "a.yaml", Data: []byte(baseBundle + "  - {id: base-read, action_type: fs.write, resource: 'file://workspace/x/**', decision: ALLOW}\n")},
		{Path: "b.yaml", Data: []byte(dupBundle)},
	}
	fs, err := LintSources(srcs, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := findingKeys(fs); got != "error:duplicate_rule_id:base-read error:duplicate_rule_id:base-read" {
		t.Fatalf("got %q", got)
	}
	if !strings.Contains(fs[1].Message, "b.yaml $.rules[0] (first at a.yaml $.rules[0])") {
		t.Errorf("message %q", fs[1].Message)
	}
	if _, err := LintSources([]BundleSource{{Path: "bad.yaml", Data: []byte("x: 1")}}, LoadOptions{}); err == nil {
		t.Error("a parse error must still be an error")
	}
}
