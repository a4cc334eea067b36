package policy

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// refMatchArgv is the definition, written as plainly as possible: a
// recursive search over every way the wildcards can split argv.
func refMatchArgv(pattern, argv []string) bool {
	if len(pattern) == 0 {
		return len(argv) == 0
	}
	switch p := pattern[0]; p {
	case ArgvAnyOperands, ArgvAnyTokens:
		for n := 0; n <= len(argv); n++ {
			if n > 0 && p == ArgvAnyOperands && IsOption(argv[n-1]) {
				return false
			}
			if refMatchArgv(pattern[1:], argv[n:]) {
				return true
			}
		}
		return false
	default:
		if len(argv) == 0 {
			return false
		}
		ok := p == argv[0] || p == ArgvOneToken || (p == ArgvOneOperand && !IsOption(argv[0]))
		return ok && refMatchArgv(pattern[1:], argv[1:])
	}
}

// TestMatchArgvAgreesWithDefinition compares the dynamic-programming
// matcher with the recursive definition on random patterns and argv over a
// small alphabet, so that every interplay of the four wildcards occurs.
func TestMatchArgvAgreesWithDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 1))
	pat := []string{"*", "**", "-*", "-**", "a", "-o", "--"}
	arg := []string{"a", "b", "-o", "--", "-"}
	for range 20000 {
		p := make([]string, r.IntN(5))
		for i := range p {
			p[i] = pat[r.IntN(len(pat))]
		}
		a := make([]string, r.IntN(6))
		for i := range a {
			a[i] = arg[r.IntN(len(arg))]
		}
		if got, want := MatchArgv(p, a), refMatchArgv(p, a); got != want {
			t.Fatalf("MatchArgv(%q, %q) = %v, definition says %v", p, a, got, want)
		}
	}
}

// TestArgvCoversIsSound: when lint says pattern a covers pattern b, every
// argv b matches is matched by a (for allowing and for deny patterns).
func TestArgvCoversIsSound(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 2))
	pat := []string{"*", "**", "-*", "-**", "a", "-o"}
	arg := []string{"a", "b", "-o", "-"}
	var argvs [][]string
	var gen func(prefix []string)
	gen = func(prefix []string) {
		argvs = append(argvs, append([]string(nil), prefix...))
		if len(prefix) < 4 {
			for _, x := range arg {
				gen(append(prefix, x))
			}
		}
	}
	gen(nil)
	randPattern := func() []string {
		p := make([]string, 1+r.IntN(3))
		for i := range p {
			p[i] = pat[r.IntN(len(pat))]
		}
		return p
	}
	for range 3000 {
		pa, pb := randPattern(), randPattern()
		da, db := r.IntN(2) == 0, r.IntN(2) == 0
		a, b := compileArgvPattern(pa, da), compileArgvPattern(pb, db)
		if !globCovers(a.toks, b.toks) {
			continue
		}
		for _, argv := range argvs {
			src := &argvSource{strs: argv}
			mb, _ := b.match(src, len(argv))
			ma, _ := a.match(src, len(argv))
			if mb && !ma {
				t.Fatalf("%q (deny %v) said to cover %q (deny %v), but %q matches only the latter", pa, da, pb, db, argv)
			}
		}
	}
}

// FuzzArgvMatch holds the compiled matcher (on params JSON, escapes and
// all) and MatchArgv to the recursive definition. Tokens are split on
// spaces; the first argument is the pattern, the second the argv.
func FuzzArgvMatch(f *testing.F) {
	f.Add("git log **", "git log HEAD --output=x")
	f.Add("-** x **", "x -o x")
	f.Add("git status -*", "git status --short")
	f.Add("* ** -*", "- -- a")
	f.Fuzz(func(t *testing.T, pattern, argv string) {
		p, a := strings.Fields(pattern), strings.Fields(argv)
		if len(p) == 0 || len(p) > 8 || len(a) > 12 || !utf8.ValidString(argv) {
			return // JSON would replace invalid UTF-8, so argv would differ
		}
		want := refMatchArgv(p, a)
		if got := MatchArgv(p, a); got != want {
			t.Fatalf("MatchArgv(%q, %q) = %v, definition %v", p, a, got, want)
		}
		params, err := json.Marshal(map[string]any{"argv": a})
		if err != nil {
			return
		}
		var spans spanList
		if _, err := extractArgv(params, &spans, &foldCache{}); err != nil {
			t.Fatal(err)
		}
		c := compileArgvPattern(p, false)
		items := spans.items()
		got, err := c.match(&argvSource{b: params, spans: items}, len(items))
		if err != nil || got != want {
			t.Fatalf("compiled %q on %s = %v (%v), definition %v", p, params, got, err, want)
		}
	})
}
