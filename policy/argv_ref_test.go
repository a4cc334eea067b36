package policy

import (
	"math/rand/v2"
	"testing"
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
