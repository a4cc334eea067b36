package policy

// Exec argv patterns, compiled once. A pattern is positional: "*" is one
// token, "**" any number of tokens (also none), other tokens are literal.

type argvPattern struct {
	toks []globSeg // segLiteral, segOne or segAny
}

func compileArgvPattern(tokens []string) argvPattern {
	var p argvPattern
	for _, t := range tokens {
		switch {
		case t == "**" && len(p.toks) > 0 && p.toks[len(p.toks)-1].kind == segAny:
		case t == "**":
			p.toks = append(p.toks, globSeg{kind: segAny})
		case t == "*":
			p.toks = append(p.toks, globSeg{kind: segOne})
		default:
			p.toks = append(p.toks, globSeg{kind: segLiteral, text: t})
		}
	}
	return p
}

// match runs the same last-star backtracking as resource globs, over the
// argv token spans inside the params JSON.
func (p *argvPattern) match(b []byte, argv []span) (bool, error) {
	pi, ai := 0, 0
	starP, starA := -1, 0
	for ai < len(argv) {
		if pi < len(p.toks) && p.toks[pi].kind == segAny {
			starP, starA = pi, ai
			pi++
			continue
		}
		ok, err := p.tokenMatches(pi, b, argv[ai])
		if err != nil {
			return false, err
		}
		if ok {
			pi, ai = pi+1, ai+1
			continue
		}
		if starP < 0 {
			return false, nil
		}
		starA++
		pi, ai = starP+1, starA
	}
	for pi < len(p.toks) && p.toks[pi].kind == segAny {
		pi++
	}
	return pi == len(p.toks), nil
}

func (p *argvPattern) tokenMatches(pi int, b []byte, tok span) (bool, error) {
	if pi >= len(p.toks) {
		return false, nil
	}
	t := &p.toks[pi]
	if t.kind == segOne {
		return true, nil
	}
	return spanEquals(b, tok, t.text)
}

// spanEquals compares a params string with s, decoding only escaped strings.
func spanEquals(b []byte, sp span, s string) (bool, error) {
	if !sp.escaped {
		return string(b[sp.start:sp.end]) == s, nil
	}
	d, err := decodeString(b, sp)
	return d == s, err
}

// extractArgv adds the spans of params.argv to out. found is false when
// argv is absent; argv that is not an array of strings is an error.
func extractArgv(b []byte, out *spanList) (bool, error) {
	argvPath := [1]pathSeg{{key: "argv", index: -1}}
	start, found, err := lookup(b, argvPath[:])
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

// MatchArgv matches argv against one exec_match pattern with the same
// semantics as the compiled evaluator: "*" is one token, "**" any number of
// tokens (also none), every other token is literal. Executors use it to
// re-check the exec_constraints obligation at run time. It backtracks only
// to the last "**", so it runs in O(len(pattern) * len(argv)).
func MatchArgv(pattern, argv []string) bool {
	pi, ai := 0, 0
	star, mark := -1, 0
	for ai < len(argv) {
		switch {
		case pi < len(pattern) && pattern[pi] == "**":
			star, mark = pi, ai
			pi++
		case pi < len(pattern) && (pattern[pi] == "*" || pattern[pi] == argv[ai]):
			pi, ai = pi+1, ai+1
		case star >= 0:
			mark++
			pi, ai = star+1, mark
		default:
			return false
		}
	}
	for pi < len(pattern) && pattern[pi] == "**" {
		pi++
	}
	return pi == len(pattern)
}
