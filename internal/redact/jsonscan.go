package redact

import (
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// cleanJSON reports whether b is one compact JSON value that JSON would
// return unchanged: no white space, and no string, key or number that
// redaction would alter, nor a credential-named key with a value to mask.
// It is one pass over b that allocates at most a buffer for decoding
// escaped strings, so the common case (nothing to redact, as in nearly
// every audit event) costs no encoding/json tokens. Any doubt returns
// false and the rewriter decides.
//
// Strings without escapes are parts of b as written, so a rule whose hints
// occur nowhere in b cannot match them, nor can an exact secret that does
// not occur in b: those are skipped for such strings. A string with escapes
// is checked against the rules whose hints occur in its decoded text (a
// hint may be spelled with escapes in b), which is what String would apply
// to it: String skips a hinted rule whose hints are absent too.
func (r *Redactor) cleanJSON(b []byte) bool {
	s, _ := r.scanners.Get().(*scanner)
	if s == nil {
		s = new(scanner)
	}
	defer r.scanners.Put(s)
	s.r, s.in, s.pos = r, b, 0
	s.filter(b)
	ok := s.value(0) && s.pos == len(b)
	s.in = nil
	return ok
}

type scanner struct {
	r       *Redactor
	in      []byte
	pos     int
	scratch []byte
	// active are the rules that may match a string without escapes;
	// exact is the replacer when an exact secret occurs in the input.
	active []rule
	exact  *strings.Replacer
	found  []bool
	// escActive is active for the decoded text of one escaped string.
	escActive []rule
}

// filter picks the rules and exact secrets that can occur in b, in one
// pass over b with the hint index.
func (s *scanner) filter(b []byte) {
	s.active, s.exact = s.pick(s.view(b), s.active[:0])
}

// pick appends to dst the rules that can match in text (those without
// hints, and those with a hint in text) and returns them with the exact
// replacer when an exact secret occurs in text.
func (s *scanner) pick(text string, dst []rule) ([]rule, *strings.Replacer) {
	idx := s.r.hintIndex()
	n := len(s.r.rules)
	if cap(s.found) < n {
		s.found = make([]bool, n)
	}
	s.found = s.found[:n]
	clear(s.found)
	for i := 0; i < len(text); i++ {
		for _, h := range idx.byFirst[text[i]] {
			if !s.found[h.rule] && hasHintAt(text, i, h) {
				s.found[h.rule] = true
			}
		}
	}
	for i := range s.r.rules {
		if len(s.r.rules[i].hints) == 0 || s.found[i] {
			dst = append(dst, s.r.rules[i])
		}
	}
	var exact *strings.Replacer
	if s.r.hasExact(text) {
		exact = s.r.replacer
	}
	return dst, exact
}

// hasHintAt reports whether hint h occurs at b[i:], ASCII case folded when
// the rule folds (its hints are lowercase then).
func hasHintAt(b string, i int, h hintRef) bool {
	if len(b)-i < len(h.hint) {
		return false
	}
	if !h.fold {
		return string(b[i:i+len(h.hint)]) == h.hint
	}
	for j := 0; j < len(h.hint); j++ {
		c := b[i+j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != h.hint[j] {
			return false
		}
	}
	return true
}

// hintRef is one hint of one rule.
type hintRef struct {
	rule int
	hint string
	fold bool
}

// hintIndex lists every rule hint by its first byte (both cases for folded
// hints), so one pass over a document finds which rules can match in it.
type hintIndex struct {
	byFirst [256][]hintRef
}

func buildHintIndex(rules []rule) *hintIndex {
	idx := new(hintIndex)
	for ri, ru := range rules {
		for _, h := range ru.hints {
			if h == "" {
				continue
			}
			ref := hintRef{rule: ri, hint: h, fold: ru.foldHints}
			first := h[0]
			idx.byFirst[first] = append(idx.byFirst[first], ref)
			if ru.foldHints && 'a' <= first && first <= 'z' {
				idx.byFirst[first-'a'+'A'] = append(idx.byFirst[first-'a'+'A'], ref)
			}
		}
	}
	return idx
}

// clean reports whether redaction leaves str unchanged; raw says str was
// written without escapes, so the document's filtered rules suffice. An
// escaped string gets the rules its own decoded text hints at.
func (s *scanner) clean(str string, raw bool) bool {
	if raw {
		return applyRules(str, s.active, s.exact) == str
	}
	var exact *strings.Replacer
	s.escActive, exact = s.pick(str, s.escActive[:0])
	return applyRules(str, s.escActive, exact) == str
}

func (s *scanner) value(depth int) bool {
	if s.pos >= len(s.in) || depth > maxJSONDepth {
		return false
	}
	switch c := s.in[s.pos]; {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		str, raw, ok := s.str()
		return ok && s.clean(str, raw)
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return s.number()
	}
}

func (s *scanner) object(depth int) bool {
	s.pos++ // '{'
	if s.pos < len(s.in) && s.in[s.pos] == '}' {
		s.pos++
		return true
	}
	for {
		if s.pos >= len(s.in) || s.in[s.pos] != '"' {
			return false
		}
		key, raw, ok := s.str()
		if !ok || !s.clean(key, raw) || s.pos >= len(s.in) || s.in[s.pos] != ':' {
			return false
		}
		// A credential-named key keeps only a null or boolean value.
		masked := IsCredentialName(key)
		s.pos++
		if masked && !s.nullOrBool() {
			return false
		}
		if !masked && !s.value(depth) {
			return false
		}
		if s.pos >= len(s.in) {
			return false
		}
		switch s.in[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return true
		default:
			return false
		}
	}
}

func (s *scanner) nullOrBool() bool {
	return s.literal("null") || s.literal("true") || s.literal("false")
}

func (s *scanner) array(depth int) bool {
	s.pos++ // '['
	if s.pos < len(s.in) && s.in[s.pos] == ']' {
		s.pos++
		return true
	}
	for {
		if !s.value(depth) || s.pos >= len(s.in) {
			return false
		}
		switch s.in[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return true
		default:
			return false
		}
	}
}

func (s *scanner) literal(lit string) bool {
	if len(s.in)-s.pos < len(lit) || string(s.in[s.pos:s.pos+len(lit)]) != lit {
		return false
	}
	s.pos += len(lit)
	return true
}

// number accepts a JSON number; redaction must leave its text alone too
// (an exact secret can be all digits).
func (s *scanner) number() bool {
	start := s.pos
	if s.pos < len(s.in) && s.in[s.pos] == '-' {
		s.pos++
	}
	if !s.digits() {
		return false
	}
	if s.pos < len(s.in) && s.in[s.pos] == '.' {
		s.pos++
		if !s.digits() {
			return false
		}
	}
	if s.pos < len(s.in) && (s.in[s.pos] == 'e' || s.in[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.in) && (s.in[s.pos] == '+' || s.in[s.pos] == '-') {
			s.pos++
		}
		if !s.digits() {
			return false
		}
	}
	return s.clean(s.view(s.in[start:s.pos]), true)
}

func (s *scanner) digits() bool {
	start := s.pos
	for s.pos < len(s.in) && '0' <= s.in[s.pos] && s.in[s.pos] <= '9' {
		s.pos++
	}
	if s.pos == start {
		return false
	}
	// No leading zeros, as in JSON.
	return s.in[start] != '0' || s.pos-start == 1 || start > 0 && s.in[start-1] == '.'
}

// str reads the string at pos and returns its decoded content, and whether
// it had no escapes. The content aliases the input or the scratch buffer;
// it is valid until the next call and is only compared, never kept.
func (s *scanner) str() (string, bool, bool) {
	s.pos++ // opening quote
	start := s.pos
	for s.pos < len(s.in) {
		c := s.in[s.pos]
		switch {
		case c == '"':
			raw := s.in[start:s.pos]
			s.pos++
			if !utf8.Valid(raw) {
				return "", false, false
			}
			return s.view(raw), true, true
		case c == '\\':
			str, ok := s.escaped(start)
			return str, false, ok
		case c < 0x20:
			return "", false, false
		}
		s.pos++
	}
	return "", false, false
}

// escaped decodes a string with escapes into scratch.
func (s *scanner) escaped(start int) (string, bool) {
	s.scratch = append(s.scratch[:0], s.in[start:s.pos]...)
	for s.pos < len(s.in) {
		c := s.in[s.pos]
		switch {
		case c == '"':
			s.pos++
			if !utf8.Valid(s.scratch) {
				return "", false
			}
			return s.view(s.scratch), true
		case c < 0x20:
			return "", false
		case c != '\\':
			s.scratch = append(s.scratch, c)
			s.pos++
			continue
		}
		if !s.escape() {
			return "", false
		}
	}
	return "", false
}

// escape decodes the escape sequence at pos into scratch.
func (s *scanner) escape() bool {
	if s.pos+1 >= len(s.in) {
		return false
	}
	esc := s.in[s.pos+1]
	s.pos += 2
	if simple, ok := unescapes[esc]; ok {
		s.scratch = append(s.scratch, simple)
		return true
	}
	if esc != 'u' {
		return false
	}
	r1, ok := s.hex4()
	if !ok {
		return false
	}
	if utf16.IsSurrogate(r1) {
		// A lone surrogate would decode to U+FFFD: leave it to the
		// rewriter, which reproduces encoding/json exactly.
		if s.pos+1 >= len(s.in) || s.in[s.pos] != '\\' || s.in[s.pos+1] != 'u' {
			return false
		}
		s.pos += 2
		r2, ok := s.hex4()
		if r1 = utf16.DecodeRune(r1, r2); !ok || r1 == utf8.RuneError {
			return false
		}
	}
	s.scratch = utf8.AppendRune(s.scratch, r1)
	return true
}

var unescapes = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

func (s *scanner) hex4() (rune, bool) {
	if len(s.in)-s.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s.in[s.pos : s.pos+4] {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	s.pos += 4
	return r, true
}

// view is b as a string without a copy. Safe here because the redactor
// only reads its argument and the bytes do not change during the call.
func (s *scanner) view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
