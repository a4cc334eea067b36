package action

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// TestCheckStrictJSONCaseVariants: keys any decoder downstream would fold
// together are refused at every depth, however they are spelled or escaped.
func TestCheckStrictJSONCaseVariants(t *testing.T) {
	refused := map[string]string{
		"top level":             `{"amount":50,"Amount":5000}`,
		"upper case":            `{"amount":50,"AMOUNT":5000}`,
		"escaped capital":       `{"amount":50,"\u0041mount":5000}`,
		"escaped lower":         `{"Amount":50,"\u0061mount":5000}`,
		"nested object":         `{"refund":{"amount":50,"Amount":5000}}`,
		"inside array":          `{"items":[{"x":1},{"amount":50,"aMoUnT":5000}]}`,
		"deep":                  `{"a":{"b":[[{"c":{"amount":1,"AMOUNT":2}}]]}}`,
		"kelvin sign":           `{"kind":1,"\u212aind":2}`,
		"long s":                `{"status":"ok","\u017ftatus":"refunded"}`,
		"kelvin raw utf8":       "{\"kind\":1,\"\u212aind\":2}",
		"greek sigma forms":     `{"σ":1,"ς":2}`,
		"exact duplicate":       `{"amount":50,"amount":5000}`,
		"exact by escape":       `{"a":1,"\u0061":2}`,
		"apart in a big object": `{"amount":1,"b":2,"c":3,"d":4,"e":5,"AMOUNT":6}`,
		"full-width":            "{\"amount\":50,\"\uff41mount\":5000}",
		"full-width escaped":    `{"amount":50,"\uff21MOUNT":5000}`,
		"ligature":              `{"fine":1,"\ufb01ne":2}`,
		"mathematical bold":     "{\"amount\":50,\"\U0001d41amount\":5000}",
	}
	for name, doc := range refused {
		t.Run(name, func(t *testing.T) {
			err := CheckStrictJSON([]byte(doc))
			if !errors.Is(err, ErrDuplicateKey) || !errors.Is(err, ErrValidation) {
				t.Fatalf("CheckStrictJSON(%s) = %v, want a duplicate key error", doc, err)
			}
		})
	}
	accepted := []string{
		`{"amount":50,"amounts":[1]}`,
		`{"a":{"amount":1},"b":{"Amount":2}}`, // different objects
		`[{"amount":1},{"Amount":2}]`,
		`{"ß":1,"ss":2}`, // not simple case variants of each other
		`{}`, `[]`, `"x"`, `1`,
	}
	for _, doc := range accepted {
		if err := CheckStrictJSON([]byte(doc)); err != nil {
			t.Errorf("CheckStrictJSON(%s) = %v, want nil", doc, err)
		}
	}
}

// TestCheckStrictJSONAmbiguousScalars: a key a C decoder cuts at NUL, and
// numbers one decoder reads as Infinity and another exactly.
func TestCheckStrictJSONAmbiguousScalars(t *testing.T) {
	refused := []string{
		`{"amount":50,"amount\u0000":5000}`, `{"amount\u0000x":1}`, `{"a\nb":1}`, `{"a\u007fb":1}`,
		`{"amount":1e400}`, `{"amount":-1e400}`, `[2e308]`, `{"a":{"b":[1E+309]}}`,
		`{"amount":1` + strings.Repeat("0", 400) + `}`, `{"tab\u0009key":0}`,
	}
	for _, doc := range refused {
		if err := CheckStrictJSON([]byte(doc)); !errors.Is(err, ErrValidation) {
			t.Errorf("CheckStrictJSON(%s) = %v, want a validation error", doc, err)
		}
	}
	for _, doc := range []string{`{"amount":1e308}`, `{"amount":1e-400}`, `{"amount":-0}`, `{"a b":1,"é":2}`} {
		if err := CheckStrictJSON([]byte(doc)); err != nil {
			t.Errorf("CheckStrictJSON(%s) = %v, want nil", doc, err)
		}
	}
}

func TestCheckStrictJSONMessage(t *testing.T) {
	err := CheckStrictJSON([]byte(`{"x":{"amount":50,"Amount":5000}}`))
	if err == nil || err.Error() != `duplicate object key: "Amount" and "amount" differ only in case` {
		t.Fatalf("got %v", err)
	}
	for doc, want := range map[string]string{
		`{"a":1} x`: "trailing data after the json value",
		"\"\xff\"":  "json is not valid utf-8",
		`"\ud800"`:  "lone surrogate",
		``:          "empty json",
		`{"a":}`:    "invalid json",
		strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1): "nesting exceeds",
	} {
		if err := CheckStrictJSON([]byte(doc)); err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrValidation) {
			t.Errorf("CheckStrictJSON(%.20q) = %v, want %q", doc, err, want)
		}
	}
}

// TestParamsCaseVariantsEveryActionType: issue 8 #3. params with case-variant
// keys are refused at every level, for built-in and custom action types
// alike, whether decoded from a request or built in code.
func TestParamsCaseVariantsEveryActionType(t *testing.T) {
	params := []string{
		`{"amount":50,"Amount":5000}`,
		`{"order":{"amount":50,"Amount":5000}}`,
		`{"lines":[{"amount":50,"\u0041mount":5000}]}`,
	}
	types := map[string]string{
		"payments.refund": "payments://shop/orders/1", "fs.read": "file://workspace/README.md",
		"http.request": "url://example.com/", "mcp.call": "mcp://retail/refund_order",
	}
	for typ, res := range types {
		for _, p := range params {
			body := envelopeBody(map[string]string{"action_type": `"` + typ + `"`, "resource": `"` + res + `"`, "params": p})
			if _, err := DecodeEnvelope([]byte(body)); !errors.Is(err, ErrValidation) || !strings.Contains(err.Error(), "differ only in case") {
				t.Errorf("%s %s: DecodeEnvelope = %v", typ, p, err)
			}
			env := &Envelope{SchemaVersion: "v1", ActionID: "a-1", TraceID: "t-1", ActionType: typ, Resource: res, Params: json.RawMessage(p)}
			if _, err := New(env, Identity{Principal: "p", Environment: "dev"}); !errors.Is(err, ErrValidation) || !strings.Contains(err.Error(), "differ only in case") {
				t.Errorf("%s %s: New = %v", typ, p, err)
			}
		}
	}
}

func TestDecodeStrictObject(t *testing.T) {
	var v struct {
		Decision string `json:"decision"`
		N        int    `json:"n"`
	}
	if err := DecodeStrictObject([]byte(`{"decision":"APPROVE","n":1}`), &v, "decision", "n"); err != nil || v.Decision != "APPROVE" || v.N != 1 {
		t.Fatalf("valid: %v %+v", err, v)
	}
	for doc, want := range map[string]string{
		`{"decision":"x","Decision":"y"}`: "differ only in case",
		`{"Decision":"x"}`:                `unknown field "Decision"`,
		`{"n":"1"}`:                       `field "n" has the wrong type`,
		`[]`:                              "body must be a JSON object",
		`{"n":1}{}`:                       "trailing data",
	} {
		if err := DecodeStrictObject([]byte(doc), &v, "decision", "n"); err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrValidation) {
			t.Errorf("%s: %v, want %q", doc, err, want)
		}
	}
}

// FuzzFoldKey checks that FoldKey is exactly strings.EqualFold, which is
// what makes CheckStrictJSON catch every pair encoding/json would confuse.
func FuzzFoldKey(f *testing.F) {
	for _, p := range [][2]string{{"amount", "Amount"}, {"kind", "\u212aind"}, {"s", "\u017f"}, {"ß", "ss"}, {"σ", "ς"}, {"a", "b"}, {"\u0010", "\u0010"}, {"ａmount", "amount"}} {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		if !utf8Valid(a) || !utf8Valid(b) {
			return
		}
		if (FoldKey(a) == FoldKey(b)) != strings.EqualFold(a, b) {
			t.Fatalf("FoldKey(%q)=%q, FoldKey(%q)=%q, EqualFold=%v", a, FoldKey(a), b, FoldKey(b), strings.EqualFold(a, b))
		}
		doc, _ := json.Marshal(map[string]int{a: 1})
		doc2 := append(doc[:len(doc)-1:len(doc)-1], []byte(`,`+string(mustMarshal(b))+`:2}`)...)
		err := CheckStrictJSON(doc2)
		if strings.ContainsFunc(a+b, unicode.IsControl) {
			if err == nil { // refused for the control character, duplicate or not
				t.Fatalf("CheckStrictJSON(%s) accepted a control character in a key", doc2)
			}
			return
		}
		// Keys are one key when they fold alike as they are, or after NFKC.
		dup := strings.EqualFold(a, b) || FoldKey(norm.NFKC.String(a)) == FoldKey(norm.NFKC.String(b))
		if dup != errors.Is(err, ErrDuplicateKey) {
			t.Fatalf("CheckStrictJSON(%s) = %v, same key=%v", doc2, err, dup)
		}
	})
}

func mustMarshal(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

func utf8Valid(s string) bool { return utf8.ValidString(s) }

// FuzzCheckStrictJSON checks what every caller relies on: a document
// CheckStrictJSON accepts decodes with encoding/json to objects that keep
// every key (no two keys collapse into one), and none of them are equal
// under case folding.
func FuzzCheckStrictJSON(f *testing.F) {
	for _, s := range []string{`{"amount":50,"Amount":5000}`, `{"a":{"b":[{"c":1,"C":2}]}}`, `{"k":1,"\u212a":2}`,
		`{"a":1}`, `[{"x":1},{"X":2}]`, `{"a":"\ud800"}`, `{} x`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if CheckStrictJSON(raw) != nil {
			return
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber() // 1e400 is valid JSON but no float64
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", raw, err)
		}
		root, err := parseJSON(raw)
		if err != nil {
			t.Fatalf("accepted %q, which the canonical parser refuses: %v", raw, err)
		}
		checkNoFoldedKeys(t, root)
	})
}

func checkNoFoldedKeys(t *testing.T, n *node) {
	seen := map[string]bool{}
	for _, e := range n.entries {
		if seen[FoldKey(e.key)] {
			t.Fatalf("keys equal under case folding accepted: %q", e.key)
		}
		seen[FoldKey(e.key)] = true
		checkNoFoldedKeys(t, e.val)
	}
	for _, el := range n.elems {
		checkNoFoldedKeys(t, el)
	}
}

// FuzzValidParser holds the parser of valid documents to the Token parser:
// for every input both accept or both refuse, with the same error, and
// build the same tree (keys, canonical scalars, raw spans).
func FuzzValidParser(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":"x","c":[true,2,null,false]}`, ` { "x" : 1.5e3 , "y" : [ -0 , 0.0 ] } `,
		`"<&>\u2028"`, `{"\u0061":1,"a":2}`, `{"k":"\ud83d\ude00","é":{}}`, `[[[[]]]]`, `{"a":1,"A":2}`,
		`{"s":"a\"b\\c\/d\n"}`, `123456789012345678901234567890`, `-1E-7`, `[]`, `{}`} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, fold bool) {
		if !json.Valid(raw) || !utf8.Valid(raw) || checkSurrogates(raw) != nil {
			return
		}
		want, werr := parseTokens(raw, fold)
		p := validParser{in: raw, fold: fold}
		got, gerr := p.value(0)
		if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
			t.Fatalf("%q: Token parser error %v, valid parser error %v", raw, werr, gerr)
		}
		if werr == nil {
			sameNode(t, raw, want, got)
		}
	})
}

func sameNode(t *testing.T, raw []byte, a, b *node) {
	t.Helper()
	if a.kind != b.kind || !bytes.Equal(a.scalar, b.scalar) || !bytes.Equal(a.raw, b.raw) ||
		len(a.entries) != len(b.entries) || len(a.elems) != len(b.elems) {
		t.Fatalf("%q: trees differ at %q: %q vs %q", raw, a.raw, a.scalar, b.scalar)
	}
	for i := range a.entries {
		if a.entries[i].key != b.entries[i].key {
			t.Fatalf("%q: key %q vs %q", raw, a.entries[i].key, b.entries[i].key)
		}
		sameNode(t, raw, a.entries[i].val, b.entries[i].val)
	}
	for i := range a.elems {
		sameNode(t, raw, a.elems[i], b.elems[i])
	}
}
