package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/caddy-nomos/nomos/internal/jsonrpc"
)

// maxJSONDepth bounds the nesting of any JSON the gateway decodes.
const maxJSONDepth = 64

// message and rpcError are the shared JSON-RPC types.
type (
	message  = jsonrpc.Message
	rpcError = jsonrpc.Error
)

var knownMessageKeys = []string{"jsonrpc", "id", "method", "params", "result", "error"}

// decodeMessage strictly decodes one JSON-RPC message: no batches, no
// duplicate or case-variant keys at any depth, bounded depth, a string or
// number id, and exactly one of request, notification or response.
func decodeMessage(body []byte) (*message, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return nil, errors.New("json-rpc batches are not supported")
	}
	if err := checkStrictJSON(body); err != nil {
		return nil, err
	}
	var m message
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("decode json-rpc message: %w", err)
	}
	return &m, validateMessage(&m, body)
}

func validateMessage(m *message, body []byte) error {
	if err := checkTopLevelKeys(body); err != nil {
		return err
	}
	if m.JSONRPC != "2.0" {
		return errors.New(`jsonrpc must be "2.0"`)
	}
	if len(m.ID) > 0 && !jsonrpc.ValidID(m.ID) {
		return errors.New("id must be a string or a number")
	}
	switch {
	case m.IsRequest(), m.IsNotification():
		if m.Result != nil || m.Error != nil {
			return errors.New("a request carries no result or error")
		}
	case m.IsResponse():
		if (m.Result == nil) == (m.Error == nil) {
			return errors.New("a response carries exactly one of result or error")
		}
	default:
		return errors.New("not a json-rpc request, notification or response")
	}
	return nil
}

// checkTopLevelKeys refuses keys that only differ in case from a JSON-RPC
// member: encoding/json would match them case-insensitively.
func checkTopLevelKeys(body []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return fmt.Errorf("decode json-rpc message: %w", err)
	}
	for k := range raw {
		for _, known := range knownMessageKeys {
			if k != known && strings.EqualFold(k, known) {
				return fmt.Errorf("case-variant key %q", k)
			}
		}
	}
	return nil
}

// checkStrictJSON walks the token stream once: one value, bounded depth,
// and no object holding two keys equal under case folding.
func checkStrictJSON(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := walkValue(dec, 0); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after json value")
	}
	return nil
}

func walkValue(dec *json.Decoder, depth int) error {
	if depth > maxJSONDepth {
		return errors.New("json nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("malformed json: %w", err)
	}
	switch tok {
	case json.Delim('{'):
		return walkObject(dec, depth+1)
	case json.Delim('['):
		return walkArray(dec, depth+1)
	}
	return nil
}

func walkObject(dec *json.Decoder, depth int) error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("malformed json: %w", err)
		}
		key, _ := tok.(string)
		folded := strings.ToLower(key)
		if seen[folded] {
			return fmt.Errorf("duplicate or case-variant key %q", key)
		}
		seen[folded] = true
		if err := walkValue(dec, depth); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}

func walkArray(dec *json.Decoder, depth int) error {
	for dec.More() {
		if err := walkValue(dec, depth); err != nil {
			return err
		}
	}
	_, err := dec.Token()
	return err
}
