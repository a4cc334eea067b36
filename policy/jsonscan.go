package policy

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/caddy-nomos/nomos/policy/action"
)

// A small scanner over the canonical params JSON. It finds values by path
// without decoding the document, so params_match and exec_match allocate
// nothing. Action.Params is canonical JSON that the action package already
// validated, so the scanner checks only what it reads; still, it never
// trusts its input: broken JSON on its path is an error (which denies),
// never a panic.

type scanError string

func (e scanError) Error() string { return string(e) }

const (
	errMalformed = scanError("params are not valid JSON")
	// errFoldedKey: the params hold, where a path names a key, another key
	// equal to it under case folding or Unicode compatibility form. A
	// service that matches keys that way (Go's encoding/json does) reads
	// it as the key policy found missing: {"Amount":5000} is an amount of
	// 5000 to it, so the rule cannot be evaluated, which denies.
	errFoldedKey = scanError("params hold a key that differs from a params_match path only in case or Unicode form")
	maxScanDepth = 512
)

// span is a JSON value inside params: data[start:end]. For strings, start
// and end exclude the quotes and escaped tells whether decoding is needed.
type span struct {
	start, end int
	escaped    bool
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString expects b[i] == '"' and returns the contents span and the
// offset after the closing quote.
func scanString(b []byte, i int) (span, int, error) {
	sp := span{start: i + 1}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '"':
			sp.end = j
			return sp, j + 1, nil
		case '\\':
			sp.escaped = true
			j++
		}
	}
	return sp, 0, errMalformed
}

// skipValue returns the offset just after the value starting at i.
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errMalformed
	}
	switch b[i] {
	case '"':
		_, next, err := scanString(b, i)
		return next, err
	case '{', '[':
		return skipContainer(b, i)
	}
	return skipScalar(b, i)
}

func skipScalar(b []byte, i int) (int, error) {
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\n' && b[j] != '\t' && b[j] != '\r' {
		j++
	}
	if j == i {
		return 0, errMalformed
	}
	return j, nil
}

// skipContainer balances brackets, stepping over strings. The structure is
// validated only as far as needed to find the end.
func skipContainer(b []byte, i int) (int, error) {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			_, next, err := scanString(b, j)
			if err != nil {
				return 0, err
			}
			j = next - 1
		case '{', '[':
			if depth++; depth > maxScanDepth {
				return 0, errMalformed
			}
		case '}', ']':
			if depth--; depth == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, errMalformed
}

// pathSeg is one compiled dot-path step: key is the JSON-escaped object key
// (as canonical JSON writes it), fold the key case-folded in compatibility
// form (see errFoldedKey), and index the array index it also names, or -1.
type pathSeg struct {
	key       string
	fold      string
	asciiFold bool
	index     int
}

func newPathSeg(key string, index int) pathSeg {
	escaped, _ := json.Marshal(key)
	fold := action.FoldKey(norm.NFKC.String(key))
	return pathSeg{key: string(escaped[1 : len(escaped)-1]), fold: fold, asciiFold: isASCII([]byte(fold)), index: index}
}

// lookup returns the start offset of the value at path, or found=false.
func lookup(b []byte, path []pathSeg, fc *foldCache) (int, bool, error) {
	i := skipWS(b, 0)
	for _, seg := range path {
		if i >= len(b) {
			return 0, false, errMalformed
		}
		var found bool
		var err error
		switch b[i] {
		case '{':
			i, found, err = objectField(b, i, &seg, fc)
		case '[':
			i, found, err = arrayElem(b, i, seg.index)
		}
		if err != nil || !found {
			return 0, false, err
		}
	}
	return i, true, nil
}

// objectField returns the offset of the value under seg's key in the
// object at i; another key equal to it under folding is errFoldedKey.
func objectField(b []byte, i int, seg *pathSeg, fc *foldCache) (int, bool, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return 0, false, nil
	}
	for i < len(b) && b[i] == '"' {
		k, next, err := scanString(b, i)
		if err != nil {
			return 0, false, err
		}
		i = skipWS(b, next)
		if i >= len(b) || b[i] != ':' {
			return 0, false, errMalformed
		}
		if i = skipWS(b, i+1); i >= len(b) {
			return 0, false, errMalformed
		}
		if string(b[k.start:k.end]) == seg.key {
			return i, true, nil
		}
		if fc.foldsTo(b, k, seg) {
			return 0, false, errFoldedKey
		}
		if i, err = nextMember(b, i, '}'); err != nil || i < 0 {
			return 0, false, err
		}
	}
	return 0, false, errMalformed
}

// foldCache keeps, for one evaluation, the folded form of the non-ASCII
// object keys the scanner met (by offset in the params), so each is
// decoded and folded once however many rules and paths look past it: an
// agent's thousands of such keys cost one pass, not one per rule.
type foldCache struct{ m map[int]string }

// foldsTo reports whether the key at k equals seg's key under case folding
// and compatibility form. An ASCII key compares without decoding; a key
// with more runes than an ASCII path key cannot fold to it (no
// compatibility mapping removes a rune).
func (fc *foldCache) foldsTo(b []byte, k span, seg *pathSeg) bool {
	raw := b[k.start:k.end]
	if !k.escaped && isASCII(raw) {
		return len(raw) == len(seg.fold) && strings.EqualFold(string(raw), seg.fold)
	}
	if !k.escaped && seg.asciiFold && utf8.RuneCount(raw) > len(seg.fold) {
		return false
	}
	f, ok := fc.m[k.start]
	if !ok {
		s, err := decodeString(b, k)
		if err != nil {
			return false
		}
		f = action.FoldKey(norm.NFKC.String(s))
		if fc.m == nil {
			fc.m = map[int]string{}
		}
		fc.m[k.start] = f
	}
	return f == seg.fold
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// nextMember skips the value at i and the comma after it; it returns -1 at
// the closing bracket.
func nextMember(b []byte, i int, closing byte) (int, error) {
	i, err := skipValue(b, i)
	if err != nil {
		return 0, err
	}
	i = skipWS(b, i)
	if i >= len(b) {
		return 0, errMalformed
	}
	switch b[i] {
	case ',':
		return skipWS(b, i+1), nil
	case closing:
		return -1, nil
	}
	return 0, errMalformed
}

func arrayElem(b []byte, i, index int) (int, bool, error) {
	if index < 0 {
		return 0, false, nil
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return 0, false, nil
	}
	for n := 0; ; n++ {
		if n == index {
			return i, i < len(b), nil
		}
		var err error
		if i, err = nextMember(b, i, ']'); err != nil || i < 0 {
			return 0, false, err
		}
	}
}

// stringAt returns the string value at i, or ok=false when it is not a string.
func stringAt(b []byte, i int) (span, bool, error) {
	if i >= len(b) || b[i] != '"' {
		return span{}, false, nil
	}
	sp, _, err := scanString(b, i)
	return sp, err == nil, err
}

// decodeString unescapes a JSON string span. Only escaped strings reach it,
// which canonical params produce rarely (quotes, control and HTML characters).
func decodeString(b []byte, sp span) (string, error) {
	if !sp.escaped {
		return string(b[sp.start:sp.end]), nil
	}
	out := make([]byte, 0, sp.end-sp.start)
	for i := sp.start; i < sp.end; i++ {
		if b[i] != '\\' {
			out = append(out, b[i])
			continue
		}
		var err error
		if out, i, err = appendEscape(out, b, i, sp.end); err != nil {
			return "", err
		}
	}
	return string(out), nil
}

// appendEscape decodes the escape at b[i] and returns the index of its last byte.
func appendEscape(out, b []byte, i, end int) ([]byte, int, error) {
	if i+1 >= end {
		return nil, 0, errMalformed
	}
	switch c := b[i+1]; c {
	case '"', '\\', '/':
		return append(out, c), i + 1, nil
	case 'b', 'f', 'n', 'r', 't':
		return append(out, "\b\f\n\r\t"[strings.IndexByte("bfnrt", c)]), i + 1, nil
	case 'u':
		return appendUnicode(out, b, i, end)
	}
	return nil, 0, errMalformed
}

func appendUnicode(out, b []byte, i, end int) ([]byte, int, error) {
	r, ok := hex4(b, i+2, end)
	if !ok {
		return nil, 0, errMalformed
	}
	last := i + 5
	if utf16.IsSurrogate(r) {
		if lo, ok := hex4(b, i+8, end); ok && b[i+6] == '\\' && b[i+7] == 'u' {
			if dec := utf16.DecodeRune(r, lo); dec != utf8.RuneError {
				return utf8.AppendRune(out, dec), i + 11, nil
			}
		}
		r = utf8.RuneError
	}
	return utf8.AppendRune(out, r), last, nil
}

func hex4(b []byte, i, end int) (rune, bool) {
	if i+4 > end {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[i:i+4]), 16, 32)
	return rune(n), err == nil
}
