package action

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Canonicalize returns the canonical JSON form of raw, the only form Nomos
// hashes: object keys sorted bytewise, no white space, arrays in order, every
// number with a fraction or an exponent written as a string, strings escaped
// as json.Marshal escapes them (including <, > and &). Duplicate keys,
// invalid UTF-8, lone surrogates and trailing data are refused, since each
// would let two different documents share one hash. Errors wrap
// ErrValidation.
func Canonicalize(raw []byte) ([]byte, error) {
	root, err := parseJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("canonical json: %v: %w", err, ErrValidation)
	}
	return root.canonical(), nil
}

func (n *node) canonical() []byte {
	var buf bytes.Buffer
	buf.Grow(len(n.raw))
	n.write(&buf)
	return buf.Bytes()
}

// CanonicalMarshal marshals v with encoding/json and canonicalizes the result.
func CanonicalMarshal(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("canonical json: %v: %w", err, ErrValidation)
	}
	return Canonicalize(raw)
}

// SHA256Hex is the lowercase hex sha256 of b, the digest format of every
// Nomos hash.
func SHA256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (n *node) write(buf *bytes.Buffer) {
	switch n.kind {
	case '{':
		buf.WriteByte('{')
		for i, e := range n.entries {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(marshalString(e.key))
			buf.WriteByte(':')
			e.val.write(buf)
		}
		buf.WriteByte('}')
	case '[':
		buf.WriteByte('[')
		for i, e := range n.elems {
			if i > 0 {
				buf.WriteByte(',')
			}
			e.write(buf)
		}
		buf.WriteByte(']')
	default:
		buf.Write(n.scalar)
	}
}
