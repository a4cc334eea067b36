package policy

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/caddy-nomos/nomos/policy/action"
)

// TestMatchArgvAgreesWithEvaluator: the []string matcher executors use at
// run time and the compiled matcher policy evaluates with must agree, or a
// command allowed by policy could be refused at run time (or worse, the
// reverse).
func TestMatchArgvAgreesWithEvaluator(t *testing.T) {
	patterns := [][]string{
		{"git", "status"}, {"git", "*"}, {"git", "**"}, {"**"}, {"*"}, {"go", "test", "**"},
		{"**", "--force"}, {"a", "**", "b", "*"}, {"*", "**", "*"}, {"x", "**", "**", "y"},
		{"git", "status", "-*"}, {"git", "-**"}, {"-**", "x", "**"}, {"x", "-**", "**", "y"}, {"-*", "**"},
	}
	argvs := [][]string{
		{"git"}, {"git", "status"}, {"git", "status", "-s"}, {"go", "test", "./..."}, {"go", "test"},
		{"git", "push", "--force"}, {"a", "b", "c"}, {"a", "q", "b", "z"}, {"x", "y"}, {"x", "1", "2", "y"}, {"ls"},
		{"git", "status", "--short"}, {"git", "log", "--output=x"}, {"x", "-o", "x"}, {"x", "-", "y"}, {"x", "--", "q", "y"},
		{"-", "a"}, {"git", "-c", "a=b", "status"},
	}
	for i, p := range patterns {
		pj, _ := json.Marshal(p)
		bundle := fmt.Sprintf("version: v1\nrules:\n  - id: r\n    action_type: process.exec\n    resource: \"**\"\n    decision: ALLOW\n    exec_match:\n      argv_patterns: [%s]\n", pj)
		e, err := Load([]BundleSource{{Path: fmt.Sprint("p", i, ".yaml"), Data: []byte(bundle)}}, LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, argv := range argvs {
			params, _ := json.Marshal(map[string]any{"argv": argv})
			a := &action.Action{ActionType: "process.exec", Resource: "file://workspace/src", Params: params,
				Principal: "p", Agent: "a", Environment: "dev", RiskFlags: []string{action.RiskExec}}
			compiled := e.Evaluate(a).Decision == Allow
			if got := MatchArgv(p, argv); got != compiled {
				t.Errorf("pattern %q argv %q: MatchArgv %v, evaluator %v", p, argv, got, compiled)
			}
		}
	}
}
