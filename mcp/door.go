package mcp

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/caddy-nomos/nomos/internal/jsonrpc"
	"github.com/caddy-nomos/nomos/policy/action"
)

// The exported helpers below are the pieces of the governed-call path a
// door outside this package (nomos_guard's MCP mode, which carries the
// request with Caddy's reverse_proxy rather than an Upstream) needs. The
// Gateway calls the same functions, so every door decodes, names, refuses
// and shapes alike.

// DecodeMessage strictly decodes one JSON-RPC message, as the gateway does:
// no batches, no duplicate or case-variant keys (action.CheckStrictJSON),
// a string or number id, exactly one of request, notification or response.
func DecodeMessage(body []byte) (*jsonrpc.Message, error) { return decodeMessage(body) }

// CheckRoutingHeaders compares Mcp-Method and Mcp-Name, when sent, with the
// body; a mismatch is the reason to refuse, "" passes.
func CheckRoutingHeaders(r *http.Request, m *jsonrpc.Message) string {
	return checkRoutingHeaders(r, m)
}

// MessageName is the tool or prompt name, or resource URI, of a request,
// read from the member its method defines (see messageName).
func MessageName(m *jsonrpc.Message) string { return messageName(m) }

// CheckOriginHost is the DNS-rebinding defence of every Streamable HTTP
// door: a browser Origin must be in allowedOrigins (loopback origins when
// empty) and the Host must match allowedHosts (loopback names on a
// loopback listener when empty). It returns the reason to answer 403, or "".
func CheckOriginHost(r *http.Request, allowedOrigins, allowedHosts []string) string {
	return checkOriginHost(r, allowedOrigins, allowedHosts)
}

// ValidServerName reports whether name may name an upstream server in
// resources (mcp://<name>/...) and audit.
func ValidServerName(name string) bool { return validName(name) }

// SplitApproval removes the approval_id argument of a tools/call (never
// forwarded) and returns the remaining arguments and the id.
func SplitApproval(args json.RawMessage) (json.RawMessage, string, error) { return splitApproval(args) }

// PromptRequest is the mcp.prompt_get of prompt name on server.
func PromptRequest(id Identity, server, name string, args json.RawMessage) AuthzRequest {
	return NewRequest(id, action.TypeMCPPromptGet, server, []string{"prompt", name},
		map[string]any{"prompt": name, "prompt_arguments": args})
}

// ResourceRequest is the mcp.resource_read of uri on server.
func ResourceRequest(id Identity, server, uri string) AuthzRequest {
	return NewRequest(id, action.TypeMCPResourceRead, server, []string{"resource", uri}, map[string]any{"uri": uri})
}

// CompletionRequest is the mcp.completion of ref (a prompt name or a
// resource URI) on server.
func CompletionRequest(id Identity, server, ref string) AuthzRequest {
	return NewRequest(id, action.TypeMCPCompletion, server, []string{"completion", ref}, map[string]any{"ref": ref})
}

// CompletionRef is the ref of a completion/complete request.
type CompletionRef struct {
	Type string `json:"type"` // ref/prompt or ref/resource
	Name string `json:"name"`
	URI  string `json:"uri"`
}

// CompletionRefOf reads the ref of completion/complete params; a missing
// or malformed one is empty.
func CompletionRefOf(params json.RawMessage) CompletionRef {
	var p struct {
		Ref CompletionRef `json:"ref"`
	}
	_ = json.Unmarshal(params, &p)
	return p.Ref
}

// CompletionRequests are what a completion/complete of target (a prompt
// name or resource URI on server) is decided on: its mcp.completion, and
// the prompt or resource it names, which must be visible as well.
func CompletionRequests(id Identity, server, refType, target string) (completion, named AuthzRequest) {
	completion = CompletionRequest(id, server, target)
	if refType == "ref/prompt" {
		return completion, PromptRequest(id, server, target, nil)
	}
	return completion, ResourceRequest(id, server, target)
}

// ServerRequest is the governed request of an upstream→client request
// (sampling/createMessage as mcp.sample, elicitation/create as
// mcp.elicit); governed is false for the others, relayed ungoverned.
func ServerRequest(id Identity, server, method string, params json.RawMessage) (req AuthzRequest, governed bool) {
	kind, governed := serverRequestTypes[method]
	if !governed {
		return AuthzRequest{}, false
	}
	return NewRequest(id, kind[0], server, []string{kind[1]},
		map[string]any{"method": method, "request_hash": action.SHA256Hex(params)}), true
}

// UnknownReason is what a client reads for a name that does not exist for
// it, whether missing upstream or hidden by policy; kind is tool, prompt or
// resource.
func UnknownReason(kind, name string) string { return "unknown " + kind + ": " + name }

// UnknownError is the JSON-RPC error answering a name that does not exist
// for the caller.
func UnknownError(id json.RawMessage, reason string) []byte {
	return jsonrpc.ErrorResponse(id, jsonrpc.CodeInvalidParams, reason, nil)
}

// ToolErrorResult is a tools/call result with isError set, readable text
// and the result classification in _meta.
func ToolErrorResult(id json.RawMessage, class, text string) []byte {
	return toolErrorResult(id, class, text)
}

// DeniedToolResult answers a tools/call that was not carried out: the
// model reads DenialText as a tool error.
func DeniedToolResult(id json.RawMessage, res AuthzResult) []byte {
	return toolErrorResult(id, deniedClass(res), DenialText(res))
}

// DeniedError answers any other request that was not carried out: a
// JSON-RPC error carrying DenialText and the decision in data.
func DeniedError(id json.RawMessage, res AuthzResult) []byte {
	return jsonrpc.RawError(id, denialError(res))
}

// DeniedErrorOf is DeniedError as an error value, for an upstream→client
// request answered on the client's behalf.
func DeniedErrorOf(res AuthzResult) *jsonrpc.Error { return denialError(res) }

// ShapeResult applies a decision's obligations to a result: every string
// redacted, the blocks under capKey ("content", "messages", "contents";
// "" for none) capped. It returns the result and whether isError was set.
func ShapeResult(result json.RawMessage, res AuthzResult, capKey string) (any, bool) {
	return shapeOutput(result, res, capKey)
}

// ClientNotifications are the notifications a client sends a server in
// the MCP specification. The doors act on these only: anything else sent
// without an id (such as a tools/call, which some servers would run) is
// dropped, never carried undecided.
var ClientNotifications = map[string]bool{
	"notifications/initialized": true, "notifications/cancelled": true,
	"notifications/progress": true, "notifications/roots/list_changed": true,
}

// RedactMessage redacts every string of an encoded JSON-RPC message from
// an upstream with redact, but the fields a client correlates and
// dispatches on: jsonrpc, id and method; params._meta.progressToken; the
// progressToken of notifications/progress and the requestId of
// notifications/cancelled (and type and mimeType, as in every shaped
// output). nil redact keeps the message. One that does not decode is
// dropped (nil): it never leaves unredacted.
func RedactMessage(data []byte, redact func(string) string) []byte {
	return redactJSON(data, redact, true)
}

// RedactParams is RedactMessage for the params of a request alone.
func RedactParams(params []byte, redact func(string) string) []byte {
	return redactJSON(params, redact, false)
}

func redactJSON(data []byte, redact func(string) string, message bool) []byte {
	if redact == nil {
		return data
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	if obj, ok := v.(map[string]any); ok && message {
		method, _ := obj["method"].(string)
		for k, e := range obj {
			switch k {
			case "jsonrpc", "id", "method":
			case "params":
				obj[k] = redactParams(e, method, redact)
			default:
				obj[k] = redactValue(e, k, redact)
			}
		}
	} else {
		v = redactParams(v, "", redact)
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return out
}

// redactParams redacts the params of a message of method, keeping its
// protocol tokens.
func redactParams(v any, method string, redact func(string) string) any {
	p, ok := v.(map[string]any)
	if !ok {
		return redactValue(v, "", redact)
	}
	for k, e := range p {
		switch meta, isMeta := e.(map[string]any); {
		case k == "_meta" && isMeta:
			for mk, me := range meta {
				if mk != "progressToken" {
					meta[mk] = redactValue(me, mk, redact)
				}
			}
		case k == "progressToken" && method == "notifications/progress",
			k == "requestId" && method == "notifications/cancelled":
		default:
			p[k] = redactValue(e, k, redact)
		}
	}
	return p
}
