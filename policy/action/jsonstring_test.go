package action

import (
	"encoding/json"
	"testing"
)

func TestAppendStringIsJSONMarshal(t *testing.T) {
	for _, s := range []string{"", "plain", `"\/`, "<a&b>", "\x00\x1f\x7f", "\u2028\u2029", "é😀", "bad\xff\xfeutf8", "\xed\xa0\x80"} {
		checkAppendString(t, s)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "<&>", "\u2028", "\xff", "a\"b\\c\n"} {
		f.Add(s)
	}
	f.Fuzz(checkAppendString)
}

func checkAppendString(t *testing.T, s string) {
	want, _ := json.Marshal(s)
	if got := AppendString([]byte("x"), s); string(got) != "x"+string(want) {
		t.Fatalf("AppendString(%q) = %s, json.Marshal = %s", s, got[1:], want)
	}
}
