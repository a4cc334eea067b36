package action

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxDepth bounds JSON nesting. json.Decoder.Token has no limit of its own,
// and real tool arguments never nest this deep.
const maxDepth = 256

var (
	errEmptyJSON     = errors.New("empty json")
	errInvalidUTF8   = errors.New("json is not valid utf-8")
	errLoneSurrogate = errors.New("json has an invalid unicode escape (lone surrogate)")
	errDuplicateKey  = errors.New("duplicate object key")
	errTrailingData  = errors.New("trailing data after the json value")
	errTooDeep       = errors.New("json nesting exceeds 256 levels")
	errNotObject     = errors.New("not a json object")
)

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
}

// entry is one member of an object; entries are kept sorted by key.
type entry struct {
	key string
	val *node
}

// parseJSON parses raw as exactly one JSON value. Unlike encoding/json it
// refuses duplicate keys (which would otherwise keep the last value and let
// two different documents hash alike), invalid UTF-8 and lone surrogates
// (which encoding/json silently turns into U+FFFD), and trailing data.
func parseJSON(raw []byte) (*node, error) {
	if !utf8.Valid(raw) {
		return nil, errInvalidUTF8
	}
	if err := checkSurrogates(raw); err != nil {
		return nil, err
	}
	p := parser{dec: json.NewDecoder(bytes.NewReader(raw)), input: raw}
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
	n, err := p.value(tok, depth)
	if err != nil {
		return nil, err
	}
	n.raw = bytes.TrimLeft(p.input[start:p.dec.InputOffset()], " \t\r\n,:")
	return n, nil
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
	if depth >= maxDepth {
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
		val, err := p.spanValue(depth)
		if err != nil {
			return nil, err
		}
		n.entries = append(n.entries, entry{key: key, val: val})
	}
	return n, p.closing(sortEntries(n.entries))
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
			return errDuplicateKey
		}
	}
	return nil
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

// readFields strictly checks raw (see parseJSON) and returns the members of
// the top-level object, sorted by key, raw values as sent. Callers match keys
// exactly, so case variants are unknown fields, never aliases.
func readFields(raw []byte) ([]field, error) {
	root, err := parseJSON(raw)
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
