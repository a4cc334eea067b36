package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/caddy-nomos/nomos/internal/jsonrpc"
	"github.com/caddy-nomos/nomos/policy/action"
)

// message and rpcError are the shared JSON-RPC types.
type (
	message  = jsonrpc.Message
	rpcError = jsonrpc.Error
)

var knownMessageKeys = []string{"jsonrpc", "id", "method", "params", "result", "error"}

// decodeMessage strictly decodes one JSON-RPC message: no batches, no
// duplicate or case-variant keys at any depth (action.CheckStrictJSON), bounded depth, a string or
// number id, and exactly one of request, notification or response.
func decodeMessage(body []byte) (*message, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return nil, errors.New("json-rpc batches are not supported")
	}
	if err := action.CheckStrictJSON(body); err != nil {
		return nil, fmt.Errorf("malformed json: %w", err)
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
