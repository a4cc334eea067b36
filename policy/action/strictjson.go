package action

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxJSONDepth bounds JSON nesting. json.Decoder.Token has no limit of its
// own, and real tool arguments never nest this deep.
const MaxJSONDepth = 256

var (
	errEmptyJSON     = errors.New("empty json")
	errInvalidUTF8   = errors.New("json is not valid utf-8")
	errLoneSurrogate = errors.New("json has an invalid unicode escape (lone surrogate)")
	errTrailingData  = errors.New("trailing data after the json value")
	errTooDeep       = errors.New("json nesting exceeds 256 levels")
	errNotObject     = errors.New("not a json object")
	errControlKey    = errors.New("object key holds a control character")
	errNumberRange   = errors.New("json number out of the range of a 64-bit float")
)

// ErrDuplicateKey is wrapped by the error for an object that holds one key
// twice. Under CheckStrictJSON, keys that are equal under Unicode case
// folding count as the same key.
var ErrDuplicateKey = errors.New("duplicate object key")

// CheckStrictJSON checks that raw is one strict JSON value, the form every
// JSON document Nomos accepts from a client must take: valid UTF-8 without
// lone surrogate escapes, nesting within MaxJSONDepth, no trailing data, and
// no object, at any depth, holding two keys that are equal under Unicode
// simple case folding once escapes are decoded and the keys are brought to
// Unicode compatibility form (NFKC): "amount", "Amount", "AMOUNT",
// "\u0041mount" and the full-width "ａｍｏｕｎｔ" are one key. A key holding a
// control character ("amount\u0000", which a C decoder reads as "amount")
// and a number that no 64-bit float can hold (1e400 reads as Infinity in
// JavaScript and Python, fails in Go, and is exact in a decimal library)
// are refused too. Go's encoding/json matches struct
// fields that way and keeps the last duplicate, other decoders keep the
// first, so such a document could mean one thing to the policy and another
// to the service behind Nomos. This is the one implementation of that check;
// every front door and parser calls it. Errors wrap ErrValidation.
func CheckStrictJSON(raw []byte) error {
	if _, err := parseStrict(raw); err != nil {
		return &strictError{err: err}
	}
	return nil
}

// DecodeStrictObject checks raw with CheckStrictJSON, requires a JSON object
// whose keys are all among allowed (matched exactly: a case variant is an
// unknown key), then decodes it into v with encoding/json. Errors wrap
// ErrValidation.
func DecodeStrictObject(raw []byte, v any, allowed ...string) error {
	root, err := parseStrict(raw)
	if err != nil {
		return &strictError{err: err}
	}
	if root.kind != '{' {
		return &strictError{err: errors.New("body must be a JSON object")}
	}
	for _, e := range root.entries {
		if !slices.Contains(allowed, e.key) {
			return &strictError{err: errors.New("unknown field " + quoteKey(e.key))}
		}
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &strictError{err: errors.New("field " + quoteKey(te.Field) + " has the wrong type")}
		}
		return &strictError{err: errors.New("body does not decode")}
	}
	return nil
}

// strictError is a CheckStrictJSON failure: its text is the reason alone,
// and it wraps both the reason and ErrValidation.
type strictError struct{ err error }

func (e *strictError) Error() string   { return e.err.Error() }
func (e *strictError) Unwrap() []error { return []error{e.err, ErrValidation} }

// node is one parsed JSON value. Scalars are kept already in canonical text so
// writing a canonical document is a single pass; raw keeps the value's bytes
// as sent, so nested objects need not be decoded again.
type node struct {
	kind    byte   // '{', '[' or 0 for a scalar
	scalar  []byte // canonical text of a scalar
	raw     []byte // the value as it appears in the input
	entries []entry
	elems   []*node
}

// parser walks one input with json.Decoder.Token.
type parser struct {
	dec   *json.Decoder
	input []byte
	fold  bool // keys equal under case folding are duplicates
}

// entry is one member of an object; entries are kept sorted by key.
type entry struct {
	key string
	val *node
}

// parseStrict parses raw as parseJSON does and also refuses keys that are
// equal under case folding: the rule for every document a client sends.
func parseStrict(raw []byte) (*node, error) {
	return parse(raw, true)
}

// parseJSON parses raw as exactly one JSON value. Unlike encoding/json it
// refuses duplicate keys (which would otherwise keep the last value and let
// two different documents hash alike), invalid UTF-8 and lone surrogates
// (which encoding/json silently turns into U+FFFD), and trailing data. It
// compares keys exactly: it is the parser of the hash format, which must
// accept whatever Nomos itself wrote.
func parseJSON(raw []byte) (*node, error) {
	return parse(raw, false)
}

func parse(raw []byte, fold bool) (*node, error) {
	if !utf8.Valid(raw) {
		return nil, errInvalidUTF8
	}
	if err := checkSurrogates(raw); err != nil {
		return nil, err
	}
	if json.Valid(raw) {
		p := validParser{in: raw, fold: fold}
		return p.value(0)
	}
	return parseTokens(raw, fold)
}

// parseTokens parses with json.Decoder.Token, whose errors say what is
// wrong with an invalid document; valid ones take validParser, which builds
// the same tree without a Token's allocations.
func parseTokens(raw []byte, fold bool) (*node, error) {
	p := parser{dec: json.NewDecoder(bytes.NewReader(raw)), input: raw, fold: fold}
	p.dec.UseNumber()
	n, err := p.spanValue(0)
	if err == io.EOF {
		return nil, errEmptyJSON
	}
	if err != nil {
		return nil, err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return nil, errTrailingData
	}
	return n, nil
}

// spanValue parses the next value and records its raw bytes. Between two
// tokens there is only white space, "," or ":", so trimming those from the
// span since the previous token leaves exactly the value.
func (p *parser) spanValue(depth int) (*node, error) {
	start := p.dec.InputOffset()
	tok, err := p.dec.Token()
	if err == io.EOF && depth == 0 {
		return nil, err
	}
	if err != nil {
		return nil, syntaxError(err)
	}
	if num, ok := tok.(json.Number); ok && p.fold {
		if err := checkNumberRange(num); err != nil {
			return nil, err
		}
	}
	n, err := p.value(tok, depth)
	if err != nil {
		return nil, err
	}
	n.raw = bytes.TrimLeft(p.input[start:p.dec.InputOffset()], " \t\r\n,:")
	return n, nil
}

// checkNumberRange refuses a number whose magnitude overflows a 64-bit
// float: decoders disagree on it (Infinity, an error, or the exact value),
// so the policy and the service behind Nomos could read different amounts.
func checkNumberRange(num json.Number) error {
	if _, err := strconv.ParseFloat(string(num), 64); errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%w: %s", errNumberRange, truncate(string(num), 32))
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// syntaxError keeps encoding/json's description of what is wrong.
func syntaxError(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("invalid json: unexpected end of input")
	}
	return errors.New("invalid json: " + strings.TrimPrefix(err.Error(), "json: "))
}

func (p *parser) value(tok json.Token, depth int) (*node, error) {
	d, ok := tok.(json.Delim)
	if !ok {
		return scalarNode(tok)
	}
	if depth >= MaxJSONDepth {
		return nil, errTooDeep
	}
	if d == '{' {
		return p.object(depth + 1)
	}
	return p.array(depth + 1)
}

func (p *parser) object(depth int) (*node, error) {
	n := &node{kind: '{'}
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, syntaxError(err)
		}
		// Token only returns a string here: a non-string key is a syntax error.
		key, _ := tok.(string)
		if p.fold && strings.ContainsFunc(key, unicode.IsControl) {
			return nil, fmt.Errorf("%w: %s", errControlKey, quoteKey(key))
		}
		val, err := p.spanValue(depth)
		if err != nil {
			return nil, err
		}
		n.entries = append(n.entries, entry{key: key, val: val})
	}
	err := sortEntries(n.entries)
	if err == nil && p.fold {
		err = foldedDuplicate(n.entries)
	}
	return n, p.closing(err)
}

func (p *parser) array(depth int) (*node, error) {
	n := &node{kind: '['}
	for p.dec.More() {
		val, err := p.spanValue(depth)
		if err != nil {
			return nil, err
		}
		n.elems = append(n.elems, val)
	}
	return n, p.closing(nil)
}

// closing consumes the "}" or "]" that ends a container; More has already
// seen it, but Token must check that it matches.
func (p *parser) closing(err error) error {
	if err != nil {
		return err
	}
	if _, err := p.dec.Token(); err != nil {
		return syntaxError(err)
	}
	return nil
}

// sortEntries orders keys the way encoding/json orders map keys (bytewise)
// and finds duplicates as equal neighbours, without a set per object.
func sortEntries(es []entry) error {
	slices.SortStableFunc(es, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	for i := 1; i < len(es); i++ {
		if es[i].key == es[i-1].key {
			return duplicateKey(es[i].key)
		}
	}
	return nil
}

// foldedDuplicate finds two keys equal under Unicode simple case folding
// (exact duplicates are already refused), sorting folded keys so a large
// object costs n log n, not n squared.
func foldedDuplicate(es []entry) error {
	if len(es) < 2 {
		return nil
	}
	folded := make([]string, len(es))
	for i, e := range es {
		folded[i] = FoldKey(norm.NFKC.String(e.key))
	}
	order := make([]int, len(es))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(folded[a], folded[b]) })
	for i := 1; i < len(order); i++ {
		if a, b := order[i-1], order[i]; folded[a] == folded[b] {
			how := "case"
			if !strings.EqualFold(es[a].key, es[b].key) {
				how = "Unicode compatibility form"
			}
			return fmt.Errorf("%w: %s and %s differ only in %s", ErrDuplicateKey, quoteKey(es[min(a, b)].key), quoteKey(es[max(a, b)].key), how)
		}
	}
	return nil
}

func duplicateKey(key string) error {
	return fmt.Errorf("%w %s", ErrDuplicateKey, quoteKey(key))
}

// SameKey reports whether two object keys are one key under the strict
// check: equal under case folding as they are or after NFKC.
func SameKey(a, b string) bool {
	return strings.EqualFold(a, b) || FoldKey(norm.NFKC.String(a)) == FoldKey(norm.NFKC.String(b))
}

// FoldKey maps key to one representative of its Unicode simple case
// folding class, rune by rune: FoldKey(a) == FoldKey(b) exactly when
// strings.EqualFold(a, b). That is the widest matching any common decoder
// applies to object keys (encoding/json's is the same relation), so it
// catches "K" (U+212A KELVIN SIGN) against "k" and "ſ" (U+017F) against "s".
func FoldKey(key string) string {
	var b strings.Builder
	b.Grow(len(key))
	for _, r := range key {
		b.WriteRune(foldRune(r))
	}
	return b.String()
}

// foldRune returns the smallest rune of r's case folding orbit.
func foldRune(r rune) rune {
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}

// scalarNode renders a scalar canonically: numbers with a fraction or an
// exponent become strings, because their float reading differs across
// languages and would make hashes disagree.
func scalarNode(tok json.Token) (*node, error) {
	switch v := tok.(type) {
	case string:
		return &node{scalar: marshalString(v)}, nil
	case json.Number:
		if strings.ContainsAny(string(v), ".eE") {
			return &node{scalar: marshalString(string(v))}, nil
		}
		return &node{scalar: []byte(v)}, nil
	case bool:
		if v {
			return &node{scalar: []byte("true")}, nil
		}
		return &node{scalar: []byte("false")}, nil
	case nil:
		return &node{scalar: []byte("null")}, nil
	}
	return nil, errors.New("invalid json: unexpected token")
}

// marshalString escapes exactly as json.Marshal does (HTML-safe), which the
// hash format is defined by.
func marshalString(s string) []byte {
	return AppendString(nil, s)
}

// checkSurrogates refuses \uD800-\uDFFF escapes that are not a proper pair.
// In valid JSON a backslash only occurs inside strings, so no string
// tracking is needed; invalid JSON is refused by the tokenizer anyway.
func checkSurrogates(raw []byte) error {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' || i+1 >= len(raw) {
			continue
		}
		i++
		if raw[i] != 'u' {
			continue
		}
		r, ok := hex4(raw, i+1)
		if !ok || r < 0xD800 || r > 0xDFFF {
			continue
		}
		if r >= 0xDC00 {
			return errLoneSurrogate
		}
		lo, ok := hex4(raw, i+7)
		if i+6 >= len(raw) || raw[i+5] != '\\' || raw[i+6] != 'u' || !ok || lo < 0xDC00 || lo > 0xDFFF {
			return errLoneSurrogate
		}
		i += 10
	}
	return nil
}

// hex4 reads four hex digits at raw[i:].
func hex4(raw []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(raw) {
		return 0, false
	}
	var r rune
	for _, c := range raw[i : i+4] {
		v, ok := unhex(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// field is one top-level member of a JSON object, with its raw value as sent.
type field struct {
	key string
	raw json.RawMessage
	val *node
}

// readFields strictly checks raw (see CheckStrictJSON) and returns the members of
// the top-level object, sorted by key, raw values as sent. Callers match keys
// exactly, so case variants are unknown fields, never aliases.
func readFields(raw []byte) ([]field, error) {
	root, err := parseStrict(raw)
	if err != nil {
		return nil, err
	}
	return root.fields()
}

// fields lists the members of an object node.
func (n *node) fields() ([]field, error) {
	if n.kind != '{' {
		return nil, errNotObject
	}
	fields := make([]field, len(n.entries))
	for i, e := range n.entries {
		fields[i] = field{key: e.key, raw: e.val.raw, val: e.val}
	}
	return fields, nil
}

// isJSONString reports whether raw is a JSON string; json.Unmarshal would
// accept null into a string and leave it empty.
func isJSONString(raw []byte) bool {
	return len(raw) > 0 && raw[0] == '"'
}
