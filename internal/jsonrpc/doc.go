// Package jsonrpc is the JSON-RPC 2.0 vocabulary shared by the MCP front
// doors (the gateway in mcp and the stdio door in internal/mcpstdio): the
// message type, the error codes and the encoders. Decoding policy (strict
// keys, depth) stays with each door's reader.
package jsonrpc
