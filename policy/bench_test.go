package policy

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/policy/action"
)

// benchSizes are the policy sizes of docs/benchmarks.md.
func benchSizes() []int { return []int{10, 100, 1000, 10000} }

// BenchmarkEvaluate measures one decision against generated policies (see
// gen_test.go): MCP tools with params matches, file globs, exec patterns,
// network hosts and custom types, plus a fixed set of global denies. Each
// iteration evaluates the next of 256 generated actions.
func BenchmarkEvaluate(b *testing.B) {
	for _, n := range benchSizes() {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			r := rand.New(rand.NewSource(int64(n)))
			e := engineFromRules(b, genRules(r, n))
			actions := genBenchActions(b, r, n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.Evaluate(actions[i%len(actions)])
			}
		})
	}
}

// genBenchActions draws from the same domain as the rules of size n.
func genBenchActions(b *testing.B, r *rand.Rand, n int) []*action.Action {
	d := domainFor(n)
	out := make([]*action.Action, 256)
	for i := range out {
		typ, res, params := d.genAction(r)
		id := action.Identity{Principal: pick(r, "alice", "user3", "bob"), Agent: pick(r, "coder", "ops"), Environment: pick(r, "dev", "dev", "prod")}
		out[i] = newAction(b, typ, res, params, id)
	}
	return out
}

// BenchmarkEvaluateUnanchored is the worst case: every rule is "*" on a
// glob starting with a wildcard, so the index cannot narrow anything and
// every rule is checked.
func BenchmarkEvaluateUnanchored(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			rules := make([]Rule, n)
			for i := range rules {
				rules[i] = Rule{ID: fmt.Sprintf("r%05d", i), ActionType: "*", Resource: fmt.Sprintf("**/dir%d/*.go", i), Decision: Allow}
			}
			e := engineFromRules(b, rules)
			a := act(b, "fs.read", "file://workspace/src/dir7/main.go", "")
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.Evaluate(a)
			}
		})
	}
}

// BenchmarkLoad measures parse, hash and compile of a YAML-sized bundle.
func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			rules := genRules(rand.New(rand.NewSource(1)), n)
			data, err := action.CanonicalMarshal(Bundle{Version: "v1", Rules: rules})
			if err != nil {
				b.Fatal(err)
			}
			src := []BundleSource{{Path: "bench.json", Data: data}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := Load(src, LoadOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEvaluateManyKeys: params whose object holds thousands of keys
// that a path does not name, evaluated by 100 rules that look for one
// missing key. Non-ASCII keys are decoded and folded to be compared with
// the path (see errFoldedKey) once per evaluation, not once per rule, so
// the two cases should stay within a small factor of each other.
func BenchmarkEvaluateManyKeys(b *testing.B) {
	var rules strings.Builder
	rules.WriteString("version: v1\nrules:\n")
	for i := range 100 {
		fmt.Fprintf(&rules, "  - id: r%d\n    action_type: mcp.call\n    resource: mcp://crm/t%d\n    decision: DENY\n    params_match:\n      tool_arguments.amount: {gt: 100}\n", i, i%3)
	}
	e, err := Load([]BundleSource{{Path: "b.yaml", Data: []byte(rules.String())}}, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for _, kind := range []struct{ name, key string }{{"ascii", "k%05d"}, {"non-ascii", "金%d"}} {
		args := map[string]any{}
		for i := range 2000 {
			args[fmt.Sprintf(kind.key, i)] = i
		}
		raw, _ := json.Marshal(map[string]any{"tool_arguments": args})
		a := act(b, "mcp.call", "mcp://crm/t0", string(raw))
		b.Run(kind.name, func(b *testing.B) {
			for range b.N {
				e.Evaluate(a)
			}
		})
	}
}
