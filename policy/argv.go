package policy

import "strings"

// Exec argv patterns, compiled once. A pattern is positional. In ALLOW and
// REQUIRE_APPROVAL rules "*" is one operand and "**" any number of operands
// (also none), where an operand is a token that does not begin with "-";
// "-*" is one token of any kind and "-**" any number of tokens of any kind.
// A wildcard therefore never admits an option unless the pattern says so,
// because options (--output=, -c, --exec, --no-index) decide what a program
// writes and runs. In DENY rules every wildcard admits options too: a deny
// pattern is read in the direction that refuses more. Other tokens are
// literal.

// Wildcard tokens of exec_match argv patterns.
const (
	ArgvOneOperand  = "*"
	ArgvAnyOperands = "**"
	ArgvOneToken    = "-*"
	ArgvAnyTokens   = "-**"
)

type argvPattern struct {
	// toks are segLiteral, segArgOne, segArgAny, segOne or segAny.
	toks []globSeg
}

// argvTokenKind maps a pattern token to its segment kind; deny widens the
// operand wildcards to any token.
func argvTokenKind(t string, deny bool) segKind {
	switch t {
	case ArgvOneOperand:
		if deny {
			return segOne
		}
		return segArgOne
	case ArgvAnyOperands:
		if deny {
			return segAny
		}
		return segArgAny
	case ArgvOneToken:
		return segOne
	case ArgvAnyTokens:
		return segAny
	}
	return segLiteral
}

func isMulti(k segKind) bool { return k == segAny || k == segArgAny }

func compileArgvPattern(tokens []string, deny bool) argvPattern {
	var p argvPattern
	for _, t := range tokens {
		k := argvTokenKind(t, deny)
		if n := len(p.toks); isMulti(k) && n > 0 && isMulti(p.toks[n-1].kind) {
			// Two adjacent multi-token wildcards are the wider of the two.
			if k == segAny {
				p.toks[n-1].kind = segAny
			}
			continue
		}
		g := globSeg{kind: k}
		if k == segLiteral {
			g.text = t
		}
		p.toks = append(p.toks, g)
	}
	return p
}

// IsOption reports whether an argv token is an option: it begins with "-".
// "-" and "--" count as options too.
func IsOption(tok string) bool { return strings.HasPrefix(tok, "-") }

// argvSource gives the matcher the argv tokens: parsed (strs) or still
// inside the params JSON (b and spans). It is a concrete type so that
// evaluation does not allocate.
type argvSource struct {
	b     []byte
	spans []span
	strs  []string
}

func (s *argvSource) isOption(i int) (bool, error) {
	if s.strs != nil {
		return IsOption(s.strs[i]), nil
	}
	return spanIsOption(s.b, s.spans[i])
}

func (s *argvSource) equals(i int, t string) (bool, error) {
	if s.strs != nil {
		return s.strs[i] == t, nil
	}
	return spanEquals(s.b, s.spans[i], t)
}

// match decides the pattern by dynamic programming over one row: reach[j]
// says whether the pattern so far can consume exactly argv[:j]. Wildcards of
// different kinds cannot share the backtracking shortcut of resource globs,
// since an operand wildcard may refuse a token an earlier one would take.
// It runs in O(len(pattern) * len(argv)).
func (p *argvPattern) match(src *argvSource, n int) (bool, error) {
	var buf [33]bool
	reach := buf[:0]
	if n+1 > len(buf) {
		reach = make([]bool, 0, n+1)
	}
	reach = append(reach, true)
	for range n {
		reach = append(reach, false)
	}
	for k := range p.toks {
		if err := p.step(k, src, reach); err != nil {
			return false, err
		}
	}
	return reach[n], nil
}

// step advances reach over pattern token k.
func (p *argvPattern) step(k int, src *argvSource, reach []bool) error {
	t := &p.toks[k]
	if isMulti(t.kind) {
		for j := 1; j < len(reach); j++ {
			if reach[j] || !reach[j-1] {
				continue
			}
			ok, err := t.admits(src, j-1)
			if err != nil {
				return err
			}
			reach[j] = ok
		}
		return nil
	}
	for j := len(reach) - 1; j >= 1; j-- {
		ok := reach[j-1]
		if ok {
			var err error
			if ok, err = t.admits(src, j-1); err != nil {
				return err
			}
		}
		reach[j] = ok
	}
	reach[0] = false
	return nil
}

// admits reports whether the token kind may take argv[i].
func (t *globSeg) admits(src *argvSource, i int) (bool, error) {
	switch t.kind {
	case segOne, segAny:
		return true, nil
	case segArgOne, segArgAny:
		opt, err := src.isOption(i)
		return !opt, err
	}
	return src.equals(i, t.text)
}

// spanIsOption decodes an escaped token first: "\u002d" is a "-" too.
func spanIsOption(b []byte, sp span) (bool, error) {
	if !sp.escaped {
		return sp.end > sp.start && b[sp.start] == '-', nil
	}
	d, err := decodeString(b, sp)
	return IsOption(d), err
}

// spanEquals compares a params string with s, decoding only escaped strings.
func spanEquals(b []byte, sp span, s string) (bool, error) {
	if !sp.escaped {
		return string(b[sp.start:sp.end]) == s, nil
	}
	d, err := decodeString(b, sp)
	return d == s, err
}

var argvPath = [1]pathSeg{newPathSeg("argv", -1)}

// extractArgv adds the spans of params.argv to out. found is false when
// argv is absent; argv that is not an array of strings is an error.
func extractArgv(b []byte, out *spanList, fc *foldCache) (bool, error) {
	start, found, err := lookup(b, argvPath[:], fc)
	if err != nil || !found {
		return false, err
	}
	if b[start] != '[' {
		return false, errArgv
	}
	return addArgv(b, start, out)
}

const errArgv = scanError("params.argv must be an array of strings")

func addArgv(b []byte, i int, out *spanList) (bool, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return true, nil
	}
	for i >= 0 {
		if i >= len(b) || b[i] != '"' {
			return false, errArgv
		}
		sp, _, err := scanString(b, i)
		if err != nil {
			return false, err
		}
		out.add(sp)
		if i, err = nextMember(b, i, ']'); err != nil {
			return false, err
		}
	}
	return true, nil
}

// MatchArgv matches argv against one exec_match pattern of an ALLOW or
// REQUIRE_APPROVAL rule, with the compiled evaluator's matcher: "*" is one
// operand, "**" any number of operands (also none), "-*" one token of any
// kind, "-**" any number of tokens of any kind, and every other token is
// literal. An operand is a token that does not begin with "-". Executors use
// it to re-check the exec_constraints obligation at run time. It runs in
// O(len(pattern) * len(argv)).
func MatchArgv(pattern, argv []string) bool {
	p := compileArgvPattern(pattern, false)
	ok, _ := p.match(&argvSource{strs: argv}, len(argv))
	return ok
}
