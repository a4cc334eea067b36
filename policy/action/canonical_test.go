package action

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestCanonicalizeVector(t *testing.T) {
	got, err := Canonicalize([]byte(`{"b":1,"a":"x","c":[true,2]}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"a":"x","b":1,"c":[true,2]}` {
		t.Errorf("canonical = %s", got)
	}
	if h := SHA256Hex(got); h != "04ceb95b6eab660e1db5b4cf9e1d8ad320a4772a2a22775bb679d53daabd84f2" {
		t.Errorf("sha256 = %s", h)
	}
}

func TestCanonicalize(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"white space removed", " {\n\t\"a\" : [ 1 , 2 ] ,\r\n\"b\" : { } } ", `{"a":[1,2],"b":{}}`},
		{"nested keys sorted", `{"z":{"y":1,"x":2},"a":[{"d":1,"c":2}]}`, `{"a":[{"c":2,"d":1}],"z":{"x":2,"y":1}}`},
		{"keys sorted bytewise", `{"b":1,"B":2,"é":3,"z":4,"":5}`, `{"":5,"B":2,"b":1,"z":4,"é":3}`},
		{"array order kept", `[3,1,2]`, `[3,1,2]`},
		{"fraction to string", `{"x":1.50}`, `{"x":"1.50"}`},
		{"exponent to string", `[1e3,1E-2,-2.5e+10]`, `["1e3","1E-2","-2.5e+10"]`},
		{"integers kept", `[0,-0,-17,123456789012345678901234567890]`, `[0,-0,-17,123456789012345678901234567890]`},
		{"literals", `[true,false,null]`, `[true,false,null]`},
		{"top-level scalar", `"x"`, `"x"`},
		{"html escaped", `{"s":"<a href='x'>&</a>"}`, `{"s":"\u003ca href='x'\u003e\u0026\u003c/a\u003e"}`},
		{"line separators escaped", "{\"s\":\"a\u2028b\u2029c\"}", `{"s":"a\u2028b\u2029c"}`},
		{"escapes unified", `{"s":"\u00e9\/\t\u0001"}`, `{"s":"é/\t\u0001"}`},
		{"escaped key sorted on its value", `{"\u0062":1,"a":2}`, `{"a":2,"b":1}`},
		{"surrogate pair", `"\ud83d\ude00"`, `"😀"`},
		{"empty containers", `{"a":{},"b":[]}`, `{"a":{},"b":[]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("Canonicalize(%s) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

// TestCanonicalizeMatchesMarshal checks the "Go-compatible" promise against
// encoding/json itself for documents without fractions.
func TestCanonicalizeMatchesMarshal(t *testing.T) {
	docs := []string{
		`{"k":"<script>&amp;</script>","n":[1,{"b":"\u007f\u2028","a":null}],"ü":"\ud83d\ude00"}`,
		`{"z":{"é":"ç","e":"\u0000\u001f\""},"A":[true,false,"\\"]}`,
	}
	for _, d := range docs {
		var v any
		if err := json.Unmarshal([]byte(d), &v); err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(v)
		got, err := Canonicalize([]byte(d))
		if err != nil || string(got) != string(want) {
			t.Errorf("Canonicalize(%s) = %s, %v; json.Marshal = %s", d, got, err, want)
		}
	}
}

func TestCanonicalizeErrors(t *testing.T) {
	deep := strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1)
	cases := []struct{ name, in, want string }{
		{"empty", ``, "empty json"},
		{"only white space", " \n", "empty json"},
		{"invalid utf-8", "\"\xff\"", "json is not valid utf-8"},
		{"lone high surrogate", `"\ud800"`, "lone surrogate"},
		{"lone low surrogate", `"\udc00x"`, "lone surrogate"},
		{"high surrogate then letter", `"\ud800\u0041"`, "lone surrogate"},
		{"high surrogate at end", `"\ud800`, "lone surrogate"},
		{"duplicate key", `{"a":1,"a":2}`, "duplicate object key"},
		{"duplicate nested key", `{"x":[{"a":1,"b":2,"a":1}]}`, "duplicate object key"},
		{"duplicate key by escape", `{"a":1,"\u0061":2}`, "duplicate object key"},
		{"trailing object", `{} {}`, "trailing data after the json value"},
		{"trailing garbage", `{"a":1}x`, "trailing data after the json value"},
		{"trailing scalar", `1 2`, "trailing data after the json value"},
		{"too deep", deep, "json nesting exceeds 256 levels"},
		{"unterminated object", `{"a":1`, "invalid json"},
		{"trailing comma in object", `{"a":1,}`, "invalid json"},
		{"trailing comma in array", `[1,]`, "invalid json"},
		{"single quotes", `{'a':1}`, "invalid json"},
		{"non-string key", `{1:2}`, "invalid json"},
		{"missing colon", `{"a" 1}`, "invalid json"},
		{"missing comma", `{"a":1 "b":2}`, "invalid json"},
		{"leading zero", `{"a":01}`, "invalid json"},
		{"leading zero at top level", `01`, "trailing data after the json value"},
		{"bare word", `nul`, "invalid json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tc.in))
			if err == nil {
				t.Fatalf("Canonicalize(%q) = %s, want error", tc.in, got)
			}
			if !errors.Is(err, ErrValidation) || !strings.HasPrefix(err.Error(), "canonical json: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want canonical json error containing %q", err, tc.want)
			}
		})
	}
}

func TestCanonicalizeMaxDepthAccepted(t *testing.T) {
	doc := strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth)
	if _, err := Canonicalize([]byte(doc)); err != nil {
		t.Errorf("nesting of exactly %d levels refused: %v", MaxJSONDepth, err)
	}
}

func TestCanonicalMarshal(t *testing.T) {
	got, err := CanonicalMarshal(struct {
		Z float64 `json:"z"`
		A int     `json:"a"`
		M string  `json:"m"`
	}{Z: 1.5, A: 2, M: "&"})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"a":2,"m":"\u0026","z":"1.5"}` {
		t.Errorf("CanonicalMarshal = %s", got)
	}
	if _, err := CanonicalMarshal(make(chan int)); !errors.Is(err, ErrValidation) {
		t.Errorf("unmarshalable value: error %v, want ErrValidation", err)
	}
}

func TestSHA256Hex(t *testing.T) {
	if got := SHA256Hex(nil); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("SHA256Hex(nil) = %s", got)
	}
}
