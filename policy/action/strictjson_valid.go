package action

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
)

// validParser builds the node tree of a document json.Valid accepted, so it
// only has to find where each token ends: the grammar is already checked.
// Duplicate keys, folded keys, control characters in keys, numbers out of
// float64 range and depth are checked here exactly as the
// Token parser checks them, and the tree is the same (FuzzValidParser).
type validParser struct {
	in   []byte
	pos  int
	fold bool
}

var (
	litTrue  = []byte("true")
	litFalse = []byte("false")
	litNull  = []byte("null")
)

func (p *validParser) space() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\r', '\n':
			p.pos++
		default:
			return
		}
	}
}

func (p *validParser) value(depth int) (*node, error) {
	p.space()
	start := p.pos
	n, err := p.token(depth)
	if err != nil {
		return nil, err
	}
	n.raw = p.in[start:p.pos]
	return n, nil
}

func (p *validParser) token(depth int) (*node, error) {
	switch c := p.in[p.pos]; c {
	case '{', '[':
		if depth >= MaxJSONDepth {
			return nil, errTooDeep
		}
		p.pos++
		if c == '{' {
			return p.object(depth + 1)
		}
		return p.array(depth + 1)
	case '"':
		return &node{scalar: marshalString(p.str())}, nil
	case 't':
		p.pos += len(litTrue)
		return &node{scalar: litTrue}, nil
	case 'f':
		p.pos += len(litFalse)
		return &node{scalar: litFalse}, nil
	case 'n':
		p.pos += len(litNull)
		return &node{scalar: litNull}, nil
	}
	return p.number()
}

// number renders a number as scalarNode does: with a fraction or an
// exponent it becomes a string. Strict parsing refuses one no 64-bit float
// can hold, as the token parser does.
func (p *validParser) number() (*node, error) {
	start := p.pos
	for p.pos < len(p.in) && isNumberByte(p.in[p.pos]) {
		p.pos++
	}
	num := p.in[start:p.pos]
	if p.fold {
		if err := checkNumberRange(json.Number(num)); err != nil {
			return nil, err
		}
	}
	if bytes.ContainsAny(num, ".eE") {
		return &node{scalar: marshalString(string(num))}, nil
	}
	return &node{scalar: num}, nil
}

// str reads a string token; only one with escapes is decoded by
// encoding/json.
func (p *validParser) str() string {
	start := p.pos
	p.pos++
	escaped := false
	for p.in[p.pos] != '"' {
		if p.in[p.pos] == '\\' {
			escaped = true
			p.pos++
		}
		p.pos++
	}
	p.pos++
	if !escaped {
		return string(p.in[start+1 : p.pos-1])
	}
	var s string
	_ = json.Unmarshal(p.in[start:p.pos], &s) // valid by json.Valid
	return s
}

func (p *validParser) object(depth int) (*node, error) {
	n := &node{kind: '{'}
	p.space()
	for p.in[p.pos] != '}' {
		p.space()
		key := p.str()
		if p.fold && strings.ContainsFunc(key, unicode.IsControl) {
			return nil, fmt.Errorf("%w: %s", errControlKey, quoteKey(key))
		}
		p.space()
		p.pos++ // ':'
		val, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		n.entries = append(n.entries, entry{key: key, val: val})
		p.space()
		if p.in[p.pos] == ',' {
			p.pos++
		}
	}
	p.pos++
	err := sortEntries(n.entries)
	if err == nil && p.fold {
		err = foldedDuplicate(n.entries)
	}
	return n, err
}

func (p *validParser) array(depth int) (*node, error) {
	n := &node{kind: '['}
	p.space()
	for p.in[p.pos] != ']' {
		val, err := p.value(depth)
		if err != nil {
			return nil, err
		}
		n.elems = append(n.elems, val)
		p.space()
		if p.in[p.pos] == ',' {
			p.pos++
		}
	}
	p.pos++
	return n, nil
}

func isNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}
