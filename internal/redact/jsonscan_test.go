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
	va, errA := decodeNumbers(a)
	vb, errB := decodeNumbers(b)
	if errA != nil || errB != nil {
		t.Fatalf("not json: %s / %s", a, b)
	}
	return reflect.DeepEqual(va, vb)
}

// decodeNumbers keeps numbers as written, so big ones compare exactly.
func decodeNumbers(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
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

// FuzzCleanJSON: whatever the single-pass check calls clean is valid JSON
// that the rewriter leaves the same value, so the fast path never returns
// a document the slow path would have redacted.
func FuzzCleanJSON(f *testing.F) {
	for _, s := range []string{`{"a":"b"}`, `{"password":null}`, `["Bearer abcdefghijklmnop0123"]`,
		`{"k":"\u0065yJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"}`, `{"x":"a\nAuthorization: c"}`, `[1,-2.5e3,true]`} {
		f.Add([]byte(s))
	}
	r, err := New(nil)
	if err != nil {
		f.Fatal(err)
	}
	r, err = r.With(nil, []string{"brokered-value-0001"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if !r.cleanJSON(doc) {
			return
		}
		if !json.Valid(doc) {
			t.Fatalf("clean but not JSON: %q", doc)
		}
		out, err := r.rewriteJSON(doc)
		if err != nil {
			t.Fatalf("clean, but the rewriter refuses %q: %v", doc, err)
		}
		if !sameJSON(t, string(doc), string(out)) {
			t.Fatalf("clean %q, rewriter gives %q", doc, out)
		}
	})
}
