package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/caddy-nomos/nomos/policy/action"
)

// message is one JSON-RPC 2.0 message in either direction. Params, Result
// and IDs stay raw so the relay forwards them byte for byte.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

// rpcError is a JSON-RPC error object.
type rpcError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *rpcError) Error() string { return fmt.Sprintf("json-rpc error %d: %s", e.Code, e.Message) }

func (m *message) isRequest() bool      { return m.Method != "" && len(m.ID) > 0 }
func (m *message) isNotification() bool { return m.Method != "" && len(m.ID) == 0 }
func (m *message) isResponse() bool     { return m.Method == "" && len(m.ID) > 0 }

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
	if len(m.ID) > 0 && !validID(m.ID) {
		return errors.New("id must be a string or a number")
	}
	switch {
	case m.isRequest(), m.isNotification():
		if m.Result != nil || m.Error != nil {
			return errors.New("a request carries no result or error")
		}
	case m.isResponse():
		if (m.Result == nil) == (m.Error == nil) {
			return errors.New("a response carries exactly one of result or error")
		}
	default:
		return errors.New("not a json-rpc request, notification or response")
	}
	return nil
}

func validID(id json.RawMessage) bool {
	c := id[0]
	return c == '"' || c == '-' || (c >= '0' && c <= '9')
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

// encodeResult builds a response message.
func encodeResult(id json.RawMessage, result any) []byte {
	raw, err := json.Marshal(result)
	if err != nil {
		return encodeError(id, codeInternalError, "encode result", nil)
	}
	b, _ := json.Marshal(message{JSONRPC: "2.0", ID: id, Result: raw})
	return b
}

// encodeError builds an error response message.
func encodeError(id json.RawMessage, code int, msg string, data any) []byte {
	e := &rpcError{Code: code, Message: msg}
	if data != nil {
		e.Data, _ = json.Marshal(data)
	}
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(message{JSONRPC: "2.0", ID: id, Error: e})
	return b
}

// encodeNotification builds a notification message.
func encodeNotification(method string, params any) []byte {
	raw, _ := json.Marshal(params)
	b, _ := json.Marshal(message{JSONRPC: "2.0", Method: method, Params: raw})
	return b
}

// encodeRequest builds a request message.
func encodeRequest(id json.RawMessage, method string, params json.RawMessage) []byte {
	b, _ := json.Marshal(message{JSONRPC: "2.0", ID: id, Method: method, Params: params})
	return b
}
