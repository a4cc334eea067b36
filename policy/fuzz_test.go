package policy

import (
	"encoding/json"
	"testing"

	"github.com/caddy-nomos/nomos/policy/action"
)

// FuzzParseBundle: parsing never panics; an accepted bundle hashes the same
// when parsed again, and its canonical JSON, read back as JSON and as YAML,
// gives the same bundle hash.
func FuzzParseBundle(f *testing.F) {
	for _, s := range []string{sampleYAML, evalBundle, explainBundle, baseBundle, dupBundle} {
		f.Add([]byte(s), true)
	}
	for _, s := range []string{sampleJSON, orgBundle, `{"version":"v1","rules":[{"id":"a","action_type":"*","resource":"**","decision":"DENY","params_match":{"x.0":{"equals":{"b":[1,2.5e3,"\u003c"]}}}}]}`} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte("version: v1\nrules:\n  - {id: a, action_type: mcp.call, resource: '*', decision: ALLOW, params_match: {n: {gte: -0.0e-0}}}\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, yaml bool) {
		name := "f.json"
		if yaml {
			name = "f.yaml"
		}
		b, hash, err := ParseBundle(name, data)
		if err != nil {
			return
		}
		if _, again, err := ParseBundle(name, data); err != nil || again != hash {
			t.Fatalf("second parse: %v, hash %s != %s", err, again, hash)
		}
		canon, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, h, err := ParseBundle("r.json", canon); err != nil || h != hash {
			t.Fatalf("json round trip: %v, hash %s != %s\n%s", err, h, hash, canon)
		}
		// JSON is YAML: when the YAML reader accepts the same text it must
		// read the same bundle.
		if _, h, err := ParseBundle("r.yaml", canon); err == nil && h != hash {
			t.Fatalf("yaml round trip: hash %s != %s\n%s", h, hash, canon)
		}
		if _, err := Load([]BundleSource{{Path: name, Data: data}}, LoadOptions{}); err != nil {
			t.Fatalf("parsed but does not load: %v", err)
		}
	})
}

// FuzzEvaluateParams feeds arbitrary params bytes (not just canonical JSON)
// to the scanner-based matchers: evaluation must never panic, and when the
// bytes are canonical JSON the explanation must agree with the decision.
func FuzzEvaluateParams(f *testing.F) {
	e, err := Load([]BundleSource{{Path: "e.yaml", Data: []byte(evalBundle)}}, LoadOptions{})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{`{"argv":["git","status"]}`, `{"tool_arguments":{"amount":"100.5"}}`, `{"tool_arguments":{"amount":1e400}}`,
		`{"argv":["a\u003c","\"x"]}`, `{"tool_arguments":[1,{"amount":2}]}`, `{"argv":`, `{`, ``} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, params []byte, exec bool) {
		a := &action.Action{ActionType: "mcp.call", Resource: "mcp://retail/refund_order", Params: params}
		if exec {
			a = &action.Action{ActionType: "process.exec", Resource: "file://workspace/r", Params: params, RiskFlags: []string{"risk.exec"}}
		}
		d := e.Evaluate(a)
		if x := e.Explain(a); x.Decision != d.Decision || x.ReasonCode != d.ReasonCode {
			t.Fatalf("explain %s/%s, evaluate %s/%s", x.Decision, x.ReasonCode, d.Decision, d.ReasonCode)
		}
	})
}
