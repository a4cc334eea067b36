package policy

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/caddy-nomos/nomos/policy/action"
)

// Matcher values are stored as canonical JSON, written here from the decoded
// tree with the rules of action.Canonicalize: keys sorted, no white space,
// Go string escaping, and any number with a fraction or an exponent written
// as a string. Hashes go through the action package itself.

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

// hashCanonical is the sha256 hex of v's canonical JSON, computed exactly as
// every other Nomos hash is.
func hashCanonical(v any) (string, error) {
	b, err := action.CanonicalMarshal(v)
	if err != nil {
		return "", err
	}
	return action.SHA256Hex(b), nil
}
