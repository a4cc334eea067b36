package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/caddy-nomos/nomos/policy/action"
)

// Hash returns the event hash of one event line: the SHA-256 hex of the
// canonical JSON of the event with event_hash set to "". The line may carry
// any event_hash (or none); it is ignored, so a verifier can pass a stored
// line as is. prev_event_hash is part of the hashed content, which is what
// links each event to the one before it.
func Hash(line []byte) (string, error) {
	// Canonicalize refuses duplicate keys and invalid UTF-8: either would
	// let two readers see different events behind one hash.
	if _, err := action.Canonicalize(line); err != nil {
		return "", fmt.Errorf("audit: hash: %w", err)
	}
	fields, err := decodeObject(line)
	if err != nil {
		return "", fmt.Errorf("audit: hash: %w", err)
	}
	fields["event_hash"] = ""
	canon, err := action.CanonicalMarshal(fields)
	if err != nil {
		return "", fmt.Errorf("audit: hash: canonical json: %w", err)
	}
	return action.SHA256Hex(canon), nil
}

// decodeObject parses one JSON object. Numbers stay json.Number so that
// large integers keep every digit: rounding them to float64 would let an
// edit of a big id go unnoticed by the hash.
func decodeObject(line []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var fields map[string]any
	if err := dec.Decode(&fields); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	if fields == nil {
		return nil, errors.New("decode event: not a json object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("decode event: trailing data after the object")
	}
	return fields, nil
}

// withEventHash returns line with event_hash set to hash. Other values are
// kept byte for byte (only re-compacted), so the stored line hashes the
// same as the line the hash was computed from.
func withEventHash(line []byte, hash string) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	quoted, err := json.Marshal(hash)
	if err != nil {
		return nil, err
	}
	fields["event_hash"] = quoted
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
