package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits that keep a hostile bundle from exhausting the loader.
const (
	maxBundleBytes = 8 << 20
	maxDepth       = 64
)

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

// value is a parsed JSON or YAML document with its key order kept, so both
// formats share one strict, path-reporting decoder.
type value struct {
	kind  kind
	str   string // string contents or the exact number text
	b     bool
	items []*value
	keys  []string
	vals  []*value
}

func (v *value) kindName() string {
	return [...]string{"null", "boolean", "number", "string", "array", "object"}[v.kind]
}

// childPath renders object keys as .key when they are identifiers and as
// ["key"] otherwise, so params_match paths (which contain dots) stay readable.
func childPath(path, key string) string {
	if isIdent(key) {
		return path + "." + key
	}
	return path + "[" + strconv.Quote(key) + "]"
}

func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// parseJSONTree decodes one JSON document, rejecting duplicate keys and any
// trailing data.
func parseJSONTree(data []byte) (*value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readJSON(dec, "$", 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errAt("$", "trailing data after the bundle")
	}
	return v, nil
}

func readJSON(dec *json.Decoder, path string, depth int) (*value, error) {
	if depth > maxDepth {
		return nil, errAt(path, "nesting deeper than %d", maxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, errAt(path, "invalid JSON: %s", jsonErrText(err))
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			return readJSONObject(dec, path, depth)
		}
		if t == '[' {
			return readJSONArray(dec, path, depth)
		}
		return nil, errAt(path, "invalid JSON: unexpected %q", string(t))
	case string:
		return &value{kind: kindString, str: t}, nil
	case json.Number:
		return &value{kind: kindNumber, str: string(t)}, nil
	case bool:
		return &value{kind: kindBool, b: t}, nil
	}
	return &value{kind: kindNull}, nil
}

func readJSONObject(dec *json.Decoder, path string, depth int) (*value, error) {
	v := &value{kind: kindObject}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errAt(path, "invalid JSON: %s", jsonErrText(err))
		}
		key, _ := tok.(string)
		if err := v.addKey(key, path, "json"); err != nil {
			return nil, err
		}
		child, err := readJSON(dec, childPath(path, key), depth+1)
		if err != nil {
			return nil, err
		}
		v.vals = append(v.vals, child)
	}
	return v, closeJSON(dec, path)
}

func readJSONArray(dec *json.Decoder, path string, depth int) (*value, error) {
	v := &value{kind: kindArray}
	for dec.More() {
		child, err := readJSON(dec, indexPath(path, len(v.items)), depth+1)
		if err != nil {
			return nil, err
		}
		v.items = append(v.items, child)
	}
	return v, closeJSON(dec, path)
}

func closeJSON(dec *json.Decoder, path string) error {
	if _, err := dec.Token(); err != nil {
		return errAt(path, "invalid JSON: %s", jsonErrText(err))
	}
	return nil
}

func jsonErrText(err error) string {
	if err == io.EOF {
		return "unexpected end of input"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Error() + " at offset " + strconv.FormatInt(se.Offset, 10)
	}
	return err.Error()
}

func (v *value) addKey(key, path, format string) error {
	for _, k := range v.keys {
		if k == key {
			return errAt(path, "duplicate %s key %q", format, key)
		}
	}
	v.keys = append(v.keys, key)
	return nil
}

// parseYAMLTree decodes exactly one YAML document. Aliases, merge keys and
// non-JSON tags are refused: a policy must read the same to every tool.
func parseYAMLTree(data []byte) (*value, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, errAt("$", "empty document")
		}
		return nil, errAt("$", "invalid YAML: %s", yamlErrText(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		return nil, errAt("$", "trailing YAML document after the bundle")
	}
	return fromYAML(&doc, "$", 0)
}

func yamlErrText(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

func fromYAML(n *yaml.Node, path string, depth int) (*value, error) {
	if depth > maxDepth {
		return nil, errAt(path, "nesting deeper than %d", maxDepth)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, errAt(path, "empty document")
		}
		return fromYAML(n.Content[0], path, depth)
	case yaml.MappingNode:
		return yamlMapping(n, path, depth)
	case yaml.SequenceNode:
		return yamlSequence(n, path, depth)
	case yaml.ScalarNode:
		return yamlScalar(n, path)
	case yaml.AliasNode:
		return nil, errAt(path, "yaml aliases are not supported (line %d)", n.Line)
	}
	return nil, errAt(path, "unsupported yaml node (line %d)", n.Line)
}

func yamlMapping(n *yaml.Node, path string, depth int) (*value, error) {
	v := &value{kind: kindObject}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			return nil, errAt(path, "mapping keys must be strings (line %d)", k.Line)
		}
		if err := v.addKey(k.Value, path, "yaml"); err != nil {
			return nil, err
		}
		child, err := fromYAML(n.Content[i+1], childPath(path, k.Value), depth+1)
		if err != nil {
			return nil, err
		}
		v.vals = append(v.vals, child)
	}
	return v, nil
}

func yamlSequence(n *yaml.Node, path string, depth int) (*value, error) {
	v := &value{kind: kindArray}
	for _, c := range n.Content {
		child, err := fromYAML(c, indexPath(path, len(v.items)), depth+1)
		if err != nil {
			return nil, err
		}
		v.items = append(v.items, child)
	}
	return v, nil
}

func yamlScalar(n *yaml.Node, path string) (*value, error) {
	switch n.ShortTag() {
	case "!!str", "!!timestamp":
		// Timestamps stay text: JSON has no such type and the rule fields
		// that could hold one (ids, globs) are strings.
		return &value{kind: kindString, str: n.Value}, nil
	case "!!null":
		return &value{kind: kindNull}, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, errAt(path, "invalid boolean (line %d)", n.Line)
		}
		return &value{kind: kindBool, b: b}, nil
	case "!!int", "!!float":
		return yamlNumber(n, path)
	}
	return nil, errAt(path, "unsupported yaml tag %s (line %d)", n.ShortTag(), n.Line)
}

// yamlNumber keeps the exact decimal text when it is already valid JSON, so
// `gt: 100.50` compares exactly; other YAML spellings are converted.
func yamlNumber(n *yaml.Node, path string) (*value, error) {
	text := n.Value
	if !isJSONNumber(text) {
		text = yamlNumberToJSON(n)
	}
	if !isJSONNumber(text) {
		return nil, errAt(path, "unsupported number %q (line %d)", n.Value, n.Line)
	}
	return &value{kind: kindNumber, str: text}, nil
}

func yamlNumberToJSON(n *yaml.Node) string {
	if n.ShortTag() == "!!int" {
		var i int64
		if n.Decode(&i) == nil {
			return strconv.FormatInt(i, 10)
		}
		var u uint64
		if n.Decode(&u) == nil {
			return strconv.FormatUint(u, 10)
		}
		return ""
	}
	s := strings.TrimPrefix(n.Value, "+")
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "-.") {
		s = strings.Replace(s, ".", "0.", 1)
	}
	return strings.Replace(strings.Replace(s, ".e", ".0e", 1), ".E", ".0E", 1) + trailingZero(s)
}

func trailingZero(s string) string {
	if strings.HasSuffix(s, ".") {
		return "0"
	}
	return ""
}

// isJSONNumber reports whether s follows the JSON number grammar.
func isJSONNumber(s string) bool {
	_, ok := parseDecimal(s)
	return ok
}
