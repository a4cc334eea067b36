package audit

// TEMPORARY: stands in for action.CanonicalMarshal / action.SHA256Hex until
// policy/action provides them. Delete this file then.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

func canonicalMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
