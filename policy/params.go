package policy

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// params_match conditions, compiled. Values are compared against the
// canonical params bytes in place.
//
// Numbers: canonical JSON writes integers as numbers and every number with a
// fraction or exponent as a string ("100.5"), so numeric operators accept a
// JSON number or a string holding a JSON number, and compare the decimal
// digits exactly.

type paramCond struct {
	path string // the dot path as written, for explain and lint
	segs []pathSeg
	m    compiledMatcher
}

type compiledMatcher struct {
	equals  *literal
	in      []literal
	present int8 // 0 unset, 1 must be present, -1 must be absent
	glob    *string
	bounds  []bound
}

// literal is a matcher value with its comparison form precomputed.
type literal struct {
	raw json.RawMessage // canonical JSON
	str string          // decoded, when raw is a string
	num *numberLit      // when raw is a number
}

type numberLit struct {
	text string
	dec  decimal
}

type boundOp uint8

const (
	opLt boundOp = iota
	opLte
	opGt
	opGte
)

type bound struct {
	op  boundOp
	num numberLit
}

func compileParamCond(path string, m Matcher) (paramCond, error) {
	c := paramCond{path: path}
	var err error
	if c.segs, err = compileDotPath(path); err != nil {
		return c, err
	}
	c.m, err = compileMatcher(m)
	return c, err
}

func compileDotPath(path string) ([]pathSeg, error) {
	parts := strings.Split(path, ".")
	segs := make([]pathSeg, len(parts))
	for i, p := range parts {
		if p == "" {
			return nil, errGlob("empty segment in params path")
		}
		segs[i] = newPathSeg(p, arrayIndex(p))
	}
	return segs, nil
}

// arrayIndex lets a numeric segment also address an array element.
func arrayIndex(p string) int {
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || strconv.Itoa(n) != p {
		return -1
	}
	return n
}

func compileMatcher(m Matcher) (compiledMatcher, error) {
	var c compiledMatcher
	if m.Equals != nil {
		lit := compileLiteral(m.Equals)
		c.equals = &lit
	}
	for _, raw := range m.In {
		c.in = append(c.in, compileLiteral(raw))
	}
	if m.Present != nil {
		c.present = -1
		if *m.Present {
			c.present = 1
		}
	}
	c.glob = m.Glob
	return c, c.compileBounds(m)
}

func (c *compiledMatcher) compileBounds(m Matcher) error {
	for _, b := range []struct {
		op  boundOp
		num json.Number
	}{{opLt, m.Lt}, {opLte, m.Lte}, {opGt, m.Gt}, {opGte, m.Gte}} {
		if b.num == "" {
			continue
		}
		d, ok := parseDecimal(string(b.num))
		if !ok {
			return errGlob("invalid number " + strconv.Quote(string(b.num)))
		}
		c.bounds = append(c.bounds, bound{op: b.op, num: numberLit{text: string(b.num), dec: d}})
	}
	return nil
}

func compileLiteral(raw json.RawMessage) literal {
	lit := literal{raw: raw}
	switch {
	case len(raw) > 0 && raw[0] == '"':
		_ = json.Unmarshal(raw, &lit.str)
	case len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9'):
		if d, ok := parseDecimal(string(raw)); ok {
			lit.num = &numberLit{text: string(raw), dec: d}
		}
	}
	return lit
}

// eval reports whether the condition holds for the params b.
func (c *paramCond) eval(b []byte, fc *foldCache) (bool, error) {
	start, found, err := lookup(b, c.segs, fc)
	if err != nil {
		return false, err
	}
	if !found {
		return c.m.present < 0 && c.m.onlyPresence(), nil
	}
	if c.m.present < 0 {
		return false, nil
	}
	end, err := skipValue(b, start)
	if err != nil {
		return false, err
	}
	return c.m.eval(b, start, end)
}

func (m *compiledMatcher) onlyPresence() bool {
	return m.equals == nil && m.in == nil && m.glob == nil && m.bounds == nil
}

func (m *compiledMatcher) eval(b []byte, start, end int) (bool, error) {
	if m.equals != nil && !m.equals.equal(b, start, end) {
		return false, nil
	}
	if m.in != nil && !m.inAny(b, start, end) {
		return false, nil
	}
	if m.glob != nil && !globValue(*m.glob, b, start) {
		return false, nil
	}
	return m.evalBounds(b, start, end)
}

func (m *compiledMatcher) inAny(b []byte, start, end int) bool {
	for i := range m.in {
		if m.in[i].equal(b, start, end) {
			return true
		}
	}
	return false
}

// equal compares numbers by value, strings by their decoded text and
// everything else by canonical bytes.
func (l *literal) equal(b []byte, start, end int) bool {
	switch {
	case l.num != nil:
		txt, d, ok := numberAt(b, start, end)
		return ok && compareDecimal(txt, &d, l.num.text, &l.num.dec) == 0
	case len(l.raw) > 0 && l.raw[0] == '"':
		sp, ok, _ := stringAt(b, start)
		eq, err := spanEquals(b, sp, l.str)
		return ok && eq && err == nil
	}
	return bytes.Equal(b[start:end], l.raw)
}

// numberAt returns the number text of a JSON number or numeric string.
func numberAt(b []byte, start, end int) ([]byte, decimal, bool) {
	txt := b[start:end]
	if len(txt) >= 2 && txt[0] == '"' {
		txt = txt[1 : len(txt)-1]
	}
	d, ok := parseDecimal(txt)
	return txt, d, ok
}

func globValue(pattern string, b []byte, start int) bool {
	sp, ok, err := stringAt(b, start)
	if !ok || err != nil {
		return false
	}
	if !sp.escaped {
		return wildcardMatch(pattern, b[sp.start:sp.end])
	}
	s, err := decodeString(b, sp)
	return err == nil && wildcardMatch(pattern, s)
}

const errNotNumber = scanError("value is not a number")

func (m *compiledMatcher) evalBounds(b []byte, start, end int) (bool, error) {
	if len(m.bounds) == 0 {
		return true, nil
	}
	txt, d, ok := numberAt(b, start, end)
	if !ok {
		return false, errNotNumber
	}
	for i := range m.bounds {
		bd := &m.bounds[i]
		if !bd.op.holds(compareDecimal(txt, &d, bd.num.text, &bd.num.dec)) {
			return false, nil
		}
	}
	return true, nil
}

func (op boundOp) holds(cmp int) bool {
	switch op {
	case opLt:
		return cmp < 0
	case opLte:
		return cmp <= 0
	case opGt:
		return cmp > 0
	}
	return cmp >= 0
}
