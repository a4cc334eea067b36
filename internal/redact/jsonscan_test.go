package redact

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// The single-pass check may only call a document clean when the token
// rewriter leaves it the same JSON value: every secret of the corpus, in
// each place an audit event carries text (a value, a key, a nested value,
// an escaped summary), must still be found.
func TestCleanJSONAgreesWithRewriter(t *testing.T) {
	r, err := mustNew(t).With([]string{`acct-[0-9]{6}`}, []string{"brokered-value-0001", "12345678901"})
	if err != nil {
		t.Fatal(err)
	}
	var inputs []string
	for _, c := range loadJSONL[secretCase](t, "secrets.jsonl") {
		inputs = append(inputs, c.Input)
	}
	for _, c := range loadJSONL[lookalikeCase](t, "lookalikes.jsonl") {
		inputs = append(inputs, c.Input)
	}
	inputs = append(inputs, "acct-123456", "brokered-value-0001", "plain <b>&</b> text", "alice@example.com",
		"line\nAuthorization: Bearer abcdefghijklmnop0123", "\u2028", "caf\u00e9")
	for _, in := range inputs {
		for _, doc := range placements(in) {
			clean := r.cleanJSON([]byte(doc))
			out, err := r.rewriteJSON([]byte(doc))
			if err != nil {
				t.Fatalf("rewriter refused %s: %v", doc, err)
			}
			if same := sameJSON(t, doc, string(out)); clean && !same {
				t.Errorf("cleanJSON passed %s, but the rewriter gives %s", doc, out)
			}
		}
	}
}

// placements embeds s where audit events carry text, escaped as
// json.Marshal escapes (HTML-safe, as the audit encoder writes).
func placements(s string) []string {
	q, _ := json.Marshal(s)
	summary, _ := json.Marshal(`{"arguments":{"q":` + string(q) + `}}`)
	return []string{
		`{"a":` + string(q) + `}`,
		`{` + string(q) + `:1}`,
		`{"executor_metadata":{"stderr":[` + string(q) + `,null]},"n":-1.5e3}`,
		`{"params_redacted_summary":` + string(summary) + `}`,
		`[` + strings.ReplaceAll(string(q), `\n`, `\u000a`) + `]`,
	}
}

func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		t.Fatalf("not json: %s / %s", a, b)
	}
	return reflect.DeepEqual(va, vb)
}

func TestCleanJSONRefusesWhatTheRewriterWouldChange(t *testing.T) {
	r := mustNew(t)
	for _, doc := range []string{
		`{ "a":1}`, `{"a":1} `, `{"password":"x"}`, `{"token":{"a":1}}`, `{"a":"\ud800"}`,
		`{"a":01}`, `{"a":1,}`, `{"a":"` + "\xff" + `"}`, `["x"`,
	} {
		if r.cleanJSON([]byte(doc)) {
			t.Errorf("cleanJSON passed %q", doc)
		}
	}
	for _, doc := range []string{`{}`, `[]`, `{"token":null,"secret":false}`, `{"a":[1,-2.5e+3,true,null,"\u003c"]}`} {
		if !r.cleanJSON([]byte(doc)) {
			t.Errorf("cleanJSON refused %q", doc)
		}
	}
}
