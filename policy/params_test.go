package policy

import (
	"encoding/json"
	"testing"
)

func TestParamsMatchers(t *testing.T) {
	params := `{"amount":"100.5","count":3,"currency":"USD","note":"refund for order 42","tags":["a","b"],` +
		`"nested":{"ok":true,"nil":null},"html":"\u003cb\u003e","quote":"a\"b","list":[10,20]}`
	tr, fa := true, false
	glob := func(s string) *string { return &s }
	raw := func(s string) json.RawMessage { return json.RawMessage(s) }
	tests := []struct {
		name string
		path string
		m    Matcher
		want bool
		err  bool
	}{
		{"gt fractional string", "amount", Matcher{Gt: "100"}, true, false},
		{"lte fractional string", "amount", Matcher{Lte: "100"}, false, false},
		{"exact boundary", "amount", Matcher{Gte: "100.50", Lte: "100.5"}, true, false},
		{"integer lt", "count", Matcher{Lt: "3"}, false, false},
		{"integer lte", "count", Matcher{Lte: "3"}, true, false},
		{"range", "count", Matcher{Gt: "1", Lt: "5"}, true, false},
		{"equals number", "count", Matcher{Equals: raw("3")}, true, false},
		{"equals number as decimal", "count", Matcher{Equals: raw(`"3.0"`)}, false, false},
		{"equals numeric string by value", "amount", Matcher{Equals: raw("100.50")}, true, false},
		{"equals string", "currency", Matcher{Equals: raw(`"USD"`)}, true, false},
		{"equals string case", "currency", Matcher{Equals: raw(`"usd"`)}, false, false},
		{"in", "currency", Matcher{In: []json.RawMessage{raw(`"EUR"`), raw(`"USD"`)}}, true, false},
		{"not in", "currency", Matcher{In: []json.RawMessage{raw(`"EUR"`)}}, false, false},
		{"glob", "note", Matcher{Glob: glob("refund*")}, true, false},
		{"glob crosses words", "note", Matcher{Glob: glob("*order ??")}, true, false},
		{"glob miss", "note", Matcher{Glob: glob("credit*")}, false, false},
		{"glob on number", "count", Matcher{Glob: glob("*")}, false, false},
		{"present", "nested.ok", Matcher{Present: &tr}, true, false},
		{"present null", "nested.nil", Matcher{Present: &tr}, true, false},
		{"absent", "nested.missing", Matcher{Present: &fa}, true, false},
		{"absent but present", "nested.ok", Matcher{Present: &fa}, false, false},
		{"missing path", "nested.missing", Matcher{Equals: raw("1")}, false, false},
		{"path into scalar", "currency.x", Matcher{Present: &tr}, false, false},
		{"equals bool", "nested.ok", Matcher{Equals: raw("true")}, true, false},
		{"equals array", "tags", Matcher{Equals: raw(`["a","b"]`)}, true, false},
		{"array index", "tags.1", Matcher{Equals: raw(`"b"`)}, true, false},
		{"array index out of range", "tags.2", Matcher{Present: &tr}, false, false},
		{"numeric array element", "list.1", Matcher{Gt: "15"}, true, false},
		{"escaped string", "html", Matcher{Equals: raw(`"<b>"`)}, true, false},
		{"escaped glob", "quote", Matcher{Glob: glob(`a"*`)}, true, false},
		{"bound on text is an error", "currency", Matcher{Gt: "1"}, false, true},
		{"bound on bool is an error", "nested.ok", Matcher{Lt: "1"}, false, true},
		{"bound on missing is no match", "missing", Matcher{Gt: "1"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := compileParamCond(tt.path, tt.m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.eval([]byte(params), &foldCache{})
			if got != tt.want || (err != nil) != tt.err {
				t.Errorf("got %v, %v; want %v, error %v", got, err, tt.want, tt.err)
			}
		})
	}
}

// TestParamsMalformedIsAnError covers JSON broken where the scanner reads.
// It does not validate the rest: Action.Params is canonical JSON, already
// validated by the action package.
func TestParamsMalformedIsAnError(t *testing.T) {
	c, _ := compileParamCond("a.b", Matcher{Equals: json.RawMessage("1")})
	for _, p := range []string{`{"a":`, `{"a":{"b"`, `{"a" 1}`, `{"x":"unterminated`, `{"x":1 "a":{}}`, `{"x":[1,{"y":"}]`} {
		if _, err := c.eval([]byte(p), &foldCache{}); err == nil {
			t.Errorf("%s: no error", p)
		}
	}
}

func TestDecodeStringEscapes(t *testing.T) {
	in := []byte(`"a\n\t\"\\\/\u00e9\ud83d\ude00\ud800x"`)
	sp, _, err := scanString(in, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeString(in, sp)
	if err != nil || got != "a\n\t\"\\/é😀\uFFFDx" {
		t.Errorf("got %q, %v", got, err)
	}
}
