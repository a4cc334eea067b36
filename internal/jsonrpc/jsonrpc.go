package jsonrpc

import (
	"encoding/json"
	"fmt"
)

// Version is the jsonrpc member of every message.
const Version = "2.0"

// Standard error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
)

// Message is one JSON-RPC 2.0 message in either direction. Params, Result
// and IDs stay raw so a relay forwards them byte for byte; which members
// are set tells the kind.
type Message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// Error is a JSON-RPC error object.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string {
	if e == nil {
		return "json-rpc error: none"
	}
	return fmt.Sprintf("json-rpc error %d: %s", e.Code, e.Message)
}

// HasID reports whether id is present and not null.
func HasID(id json.RawMessage) bool { return len(id) > 0 && string(id) != "null" }

// ValidID reports whether a present id is a string or a number.
func ValidID(id json.RawMessage) bool {
	if len(id) == 0 {
		return false
	}
	c := id[0]
	return c == '"' || c == '-' || (c >= '0' && c <= '9')
}

// IsRequest, IsNotification and IsResponse tell the kind of m.
func (m *Message) IsRequest() bool      { return m.Method != "" && HasID(m.ID) }
func (m *Message) IsNotification() bool { return m.Method != "" && !HasID(m.ID) }
func (m *Message) IsResponse() bool     { return m.Method == "" && HasID(m.ID) }

// Result encodes a response carrying result.
func Result(id json.RawMessage, result any) []byte {
	raw, err := json.Marshal(result)
	if err != nil {
		return ErrorResponse(id, CodeInternalError, "encode result", nil)
	}
	b, _ := json.Marshal(Message{JSONRPC: Version, ID: id, Result: raw})
	return b
}

// ErrorResponse encodes an error response; a missing id becomes null.
func ErrorResponse(id json.RawMessage, code int, msg string, data any) []byte {
	e := &Error{Code: code, Message: msg}
	if data != nil {
		e.Data, _ = json.Marshal(data)
	}
	return RawError(id, e)
}

// RawError encodes an error response carrying e as it is.
func RawError(id json.RawMessage, e *Error) []byte {
	if !HasID(id) {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(Message{JSONRPC: Version, ID: id, Error: e})
	return b
}

// Notification encodes a notification.
func Notification(method string, params any) []byte {
	raw, _ := json.Marshal(params)
	b, _ := json.Marshal(Message{JSONRPC: Version, Method: method, Params: raw})
	return b
}

// Request encodes a request.
func Request(id json.RawMessage, method string, params json.RawMessage) []byte {
	b, _ := json.Marshal(Message{JSONRPC: Version, ID: id, Method: method, Params: params})
	return b
}
