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
// writing a canonical document is a single pass.
type node struct {
	kind    byte   // '{', '[' or 0 for a scalar
	scalar  []byte // canonical text of a scalar
	entries []entry
	elems   []*node
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
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, errEmptyJSON
	}
	if err != nil {
		return nil, syntaxError(err)
	}
	n, err := parseValue(dec, tok, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errTrailingData
	}
	return n, nil
}

// syntaxError keeps encoding/json's description, which points at the offset.
func syntaxError(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("invalid json: unexpected end of input")
	}
	return errors.New("invalid json: " + strings.TrimPrefix(err.Error(), "json: "))
}

func parseValue(dec *json.Decoder, tok json.Token, depth int) (*node, error) {
	d, ok := tok.(json.Delim)
	if !ok {
		return scalarNode(tok)
	}
	if depth >= maxDepth {
		return nil, errTooDeep
	}
	if d == '{' {
		return parseObject(dec, depth+1)
	}
	return parseArray(dec, depth+1)
}

func parseObject(dec *json.Decoder, depth int) (*node, error) {
	n := &node{kind: '{'}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(err)
		}
		if tok == json.Delim('}') {
			return n, sortEntries(n.entries)
		}
		// Token only returns a string here: a non-string key is a syntax error.
		key, _ := tok.(string)
		if tok, err = dec.Token(); err != nil {
			return nil, syntaxError(err)
		}
		val, err := parseValue(dec, tok, depth)
		if err != nil {
			return nil, err
		}
		n.entries = append(n.entries, entry{key: key, val: val})
	}
}

func parseArray(dec *json.Decoder, depth int) (*node, error) {
	n := &node{kind: '['}
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(err)
		}
		if tok == json.Delim(']') {
			return n, nil
		}
		val, err := parseValue(dec, tok, depth)
		if err != nil {
			return nil, err
		}
		n.elems = append(n.elems, val)
	}
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
	b, _ := json.Marshal(s) // a string always marshals
	return b
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
}

// readFields strictly checks raw (see parseJSON) and returns the members of
// the top-level object in input order, raw values untouched. Callers match
// keys exactly, so case variants are unknown fields, never aliases.
func readFields(raw []byte) ([]field, error) {
	root, err := parseJSON(raw)
	if err != nil {
		return nil, err
	}
	if root.kind != '{' {
		return nil, errNotObject
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil, syntaxError(err)
	}
	fields := make([]field, 0, len(root.entries))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(err)
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, syntaxError(err)
		}
		fields = append(fields, field{key: key, raw: v})
	}
	return fields, nil
}

// isJSONString reports whether raw is a JSON string; json.Unmarshal would
// accept null into a string and leave it empty.
func isJSONString(raw []byte) bool {
	return len(raw) > 0 && raw[0] == '"'
}

// isJSONObject reports whether raw starts a JSON object (leading white space
// allowed, as in a request body).
func isJSONObject(raw []byte) bool {
	t := bytes.TrimLeft(raw, " \t\r\n")
	return len(t) > 0 && t[0] == '{'
}
