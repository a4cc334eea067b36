package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
)

// Canonical JSON as the action package defines it for every hash: keys
// sorted, no white space, Go string escaping, and any number with a fraction
// or an exponent written as a string.
//
// TODO(policy): switch to action.CanonicalMarshal once it lands, keeping this
// tree writer only for matcher values.

// canonicalValue renders one decoded value as canonical JSON.
func canonicalValue(v *value) json.RawMessage {
	var buf bytes.Buffer
	writeCanonical(&buf, v)
	return buf.Bytes()
}

func writeCanonical(buf *bytes.Buffer, v *value) {
	switch v.kind {
	case kindNull:
		buf.WriteString("null")
	case kindBool:
		buf.WriteString(strconv.FormatBool(v.b))
	case kindNumber:
		writeCanonicalNumber(buf, v.str)
	case kindString:
		writeJSONString(buf, v.str)
	case kindArray:
		writeCanonicalArray(buf, v)
	case kindObject:
		writeCanonicalObject(buf, v)
	}
}

func writeCanonicalNumber(buf *bytes.Buffer, n string) {
	if strings.ContainsAny(n, ".eE") {
		writeJSONString(buf, n)
		return
	}
	buf.WriteString(n)
}

func writeCanonicalArray(buf *bytes.Buffer, v *value) {
	buf.WriteByte('[')
	for i, item := range v.items {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeCanonical(buf, item)
	}
	buf.WriteByte(']')
}

func writeCanonicalObject(buf *bytes.Buffer, v *value) {
	order := make([]int, len(v.keys))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return v.keys[order[a]] < v.keys[order[b]] })
	buf.WriteByte('{')
	for n, i := range order {
		if n > 0 {
			buf.WriteByte(',')
		}
		writeJSONString(buf, v.keys[i])
		buf.WriteByte(':')
		writeCanonical(buf, v.vals[i])
	}
	buf.WriteByte('}')
}

// writeJSONString uses encoding/json so the escaping is exactly Go's,
// including the HTML escapes the action package's hashes depend on.
func writeJSONString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s)
	buf.Write(b)
}

// canonicalJSON marshals v with encoding/json and re-encodes it canonically.
func canonicalJSON(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	tree, err := parseJSONTree(raw)
	if err != nil {
		return nil, err
	}
	return canonicalValue(tree), nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// hashCanonical is the sha256 hex of v's canonical JSON.
func hashCanonical(v any) (string, error) {
	b, err := canonicalJSON(v)
	if err != nil {
		return "", err
	}
	return sha256Hex(b), nil
}
