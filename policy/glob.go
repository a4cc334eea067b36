package policy

import "strings"

// Resource globs are compiled once into segments. `/` is the only separator:
// a `**` segment matches zero or more segments, a `*` segment exactly one,
// and inside a segment `*` matches any run and `?` one character.

type segKind uint8

const (
	segLiteral segKind = iota // compared byte for byte
	segOne                    // "*": any single segment
	segAny                    // "**": zero or more segments
	segPattern                // contains * or ?: matched with wildcardMatch
	segArgOne                 // argv "*" of an allowing rule: one operand
	segArgAny                 // argv "**" of an allowing rule: zero or more operands
)

type globSeg struct {
	kind segKind
	text string
}

// resourceGlob is a compiled resource pattern. anchor is its longest
// literal segment prefix, which the engine indexes rules by.
type resourceGlob struct {
	source   string
	literal  bool
	segs     []globSeg
	anchor   string
	depth    int      // number of segments in anchor
	required []string // literal segments after a "**", for a cheap pre-check
}

func compileGlob(pattern string) (resourceGlob, error) {
	g := resourceGlob{source: pattern}
	if pattern == "" {
		return g, errGlob("must not be empty")
	}
	if strings.ContainsAny(pattern, "\\\x00") {
		return g, errGlob("must not contain a backslash or NUL")
	}
	for _, s := range strings.Split(pattern, "/") {
		g.segs = appendSeg(g.segs, s)
	}
	g.literal = !strings.ContainsAny(pattern, "*?")
	g.anchor, g.depth = literalPrefix(pattern, g.segs)
	g.required = requiredLiterals(g.segs[g.depth:])
	return g, nil
}

// requiredLiterals lists the literal segments that follow a "**". Each must
// occur in a matching resource, and a substring test rejects most
// non-matching resources before "**" backtracking starts.
func requiredLiterals(segs []globSeg) []string {
	var out []string
	seenAny := false
	for _, s := range segs {
		seenAny = seenAny || s.kind == segAny
		if seenAny && s.kind == segLiteral && s.text != "" {
			out = append(out, s.text)
		}
	}
	return out
}

type globError string

func (e globError) Error() string { return string(e) }

func errGlob(msg string) error { return globError(msg) }

// appendSeg classifies one segment; consecutive "**" collapse into one.
func appendSeg(segs []globSeg, s string) []globSeg {
	switch {
	case s == "**":
		if len(segs) > 0 && segs[len(segs)-1].kind == segAny {
			return segs
		}
		return append(segs, globSeg{kind: segAny})
	case s == "*":
		return append(segs, globSeg{kind: segOne})
	case strings.ContainsAny(s, "*?"):
		return append(segs, globSeg{kind: segPattern, text: s})
	}
	return append(segs, globSeg{kind: segLiteral, text: s})
}

// literalPrefix returns the pattern text before the first wildcard segment,
// cut at a segment boundary, and its segment count.
func literalPrefix(pattern string, segs []globSeg) (string, int) {
	n, size := 0, 0
	for _, s := range segs {
		if s.kind != segLiteral {
			break
		}
		if n > 0 {
			size++
		}
		size += len(s.text)
		n++
	}
	return pattern[:size], n
}

// lastLiteral returns the last segment when it is literal: every matching
// resource ends with exactly that segment.
func (g *resourceGlob) lastLiteral() (string, bool) {
	last := g.segs[len(g.segs)-1]
	return last.text, last.kind == segLiteral
}

// match reports whether the normalized resource v matches. Backtracking keeps
// only the last "**", which is enough because every other segment kind
// consumes exactly one value segment.
func (g *resourceGlob) match(v string) bool {
	if g.literal {
		return v == g.source
	}
	if strings.IndexByte(v, '\\') >= 0 {
		return false
	}
	for _, lit := range g.required {
		if !strings.Contains(v, lit) {
			return false
		}
	}
	return matchSegments(g.segs, v)
}

func matchSegments(segs []globSeg, v string) bool {
	pi, vi := 0, 0
	starP, starV := -1, 0
	for vi <= len(v) {
		if pi < len(segs) && segs[pi].kind == segAny {
			starP, starV = pi, vi
			pi++
			continue
		}
		seg, next := segmentAt(v, vi)
		if pi < len(segs) && segs[pi].matchOne(seg) {
			pi, vi = pi+1, next
			continue
		}
		if starP < 0 {
			return false
		}
		_, starV = segmentAt(v, starV)
		pi, vi = starP+1, starV
	}
	for pi < len(segs) && segs[pi].kind == segAny {
		pi++
	}
	return pi == len(segs)
}

// segmentAt returns the segment starting at offset i and the offset of the
// next one; past the last segment the next offset is len(v)+1.
func segmentAt(v string, i int) (string, int) {
	if j := strings.IndexByte(v[i:], '/'); j >= 0 {
		return v[i : i+j], i + j + 1
	}
	return v[i:], len(v) + 1
}

func (s *globSeg) matchOne(seg string) bool {
	switch s.kind {
	case segLiteral:
		return seg == s.text
	case segOne:
		return true
	case segPattern:
		return wildcardMatch(s.text, seg)
	}
	return false
}

// wildcardMatch matches one segment (or one params string): `*` is any run,
// `?` one UTF-8 character, everything else literal. It is generic so params
// bytes are matched in place.
func wildcardMatch[T text](pattern string, s T) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(pattern) && pattern[pi] == '*' {
			starP, starS = pi, si
			pi++
			continue
		}
		if ok, pn, sn := stepWildcard(pattern, pi, s, si); ok {
			pi, si = pn, sn
			continue
		}
		if starP < 0 {
			return false
		}
		starS += runeSize(s, starS)
		pi, si = starP+1, starS
	}
	for pi < len(pattern) && pattern[pi] == '*' {
		pi++
	}
	return pi == len(pattern)
}

// stepWildcard consumes one `?` (one character) or one literal byte.
func stepWildcard[T text](pattern string, pi int, s T, si int) (bool, int, int) {
	if pi >= len(pattern) {
		return false, pi, si
	}
	if pattern[pi] == '?' {
		return true, pi + 1, si + runeSize(s, si)
	}
	return pattern[pi] == s[si], pi + 1, si + 1
}

// runeSize is the length of the UTF-8 sequence at s[i], judged by its lead
// byte; invalid bytes count as one character, like utf8.DecodeRune.
func runeSize[T text](s T, i int) int {
	n := 1
	switch c := s[i]; {
	case c >= 0xF0 && c < 0xF8:
		n = 4
	case c >= 0xE0:
		n = 3
	case c >= 0xC0:
		n = 2
	}
	if c := s[i]; c >= 0xF8 || i+n > len(s) || !continuations(s, i+1, i+n) {
		return 1
	}
	return n
}

func continuations[T text](s T, from, to int) bool {
	for j := from; j < to; j++ {
		if s[j]&0xC0 != 0x80 {
			return false
		}
	}
	return true
}
