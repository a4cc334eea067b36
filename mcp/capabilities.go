package mcp

import (
	"bytes"
	"encoding/json"

	"github.com/caddy-nomos/nomos/internal/jsonrpc"
	"github.com/caddy-nomos/nomos/policy/action"
)

// mirroredCapabilities are the client capabilities the gateway declares to
// an upstream on a client's behalf, and only when the client declared
// them: the upstream then offers exactly what it would offer the client
// directly, and never sends a request the client did not agree to handle.
var mirroredCapabilities = []string{"elicitation", "experimental", "roots", "sampling"}

// maxStdioChildren bounds the shared children of one stdio upstream: one
// per distinct set of client capabilities (the control child, with none,
// included). A further set evicts a child no session uses; when all are in
// use, its session is served by the child of the largest set within it.
const maxStdioChildren = 8

// clientCapabilities is what a downstream client declared at initialize,
// reduced to the mirrored capabilities, in canonical JSON: equal sets have
// equal keys, so clients that declare the same share a stdio child.
type clientCapabilities struct {
	key  string // canonical JSON of caps; "{}" when none
	caps map[string]json.RawMessage
}

// noCapabilities is the gateway's own declaration (control sessions).
var noCapabilities = clientCapabilities{key: "{}", caps: map[string]json.RawMessage{}}

// capabilitiesOf reads the mirrored capabilities of initialize params.
// Anything malformed declares nothing: the upstream then asks nothing.
func capabilitiesOf(params json.RawMessage) clientCapabilities {
	var p struct {
		Capabilities map[string]json.RawMessage `json:"capabilities"`
	}
	if json.Unmarshal(params, &p) != nil {
		return noCapabilities
	}
	caps := map[string]json.RawMessage{}
	for _, name := range mirroredCapabilities {
		v, ok := p.Capabilities[name]
		if !ok || !isJSONObject(v) {
			continue
		}
		canon, err := action.Canonicalize(v)
		if err != nil {
			continue
		}
		caps[name] = canon
	}
	key, err := action.CanonicalMarshal(caps)
	if err != nil {
		return noCapabilities
	}
	return clientCapabilities{key: string(key), caps: caps}
}

// within reports whether every capability cc declares, d declares
// exactly so.
func (cc clientCapabilities) within(d clientCapabilities) bool {
	for name, v := range cc.caps {
		if !bytes.Equal(d.caps[name], v) {
			return false
		}
	}
	return true
}

func isJSONObject(v json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(v, &m) == nil && m != nil
}

// withCapabilities replaces the capabilities of initialize params with
// the mirrored ones, keeping the rest (protocolVersion, clientInfo, _meta).
func withCapabilities(params json.RawMessage, cc clientCapabilities) json.RawMessage {
	var p map[string]json.RawMessage
	if json.Unmarshal(params, &p) != nil || p == nil {
		p = map[string]json.RawMessage{}
	}
	p["capabilities"], _ = json.Marshal(cc.caps)
	out, _ := json.Marshal(p)
	return out
}

// gatewayInitParams are the initialize params of a session the gateway
// opens itself: a control session (no capabilities) or a shared stdio
// child serving the clients that declared cc.
func gatewayInitParams(cc clientCapabilities) json.RawMessage {
	p := map[string]any{
		"protocolVersion": gatewayProtocolVersion,
		"capabilities":    cc.caps,
		"clientInfo":      map[string]any{"name": "nomos-gateway", "version": "1"},
	}
	b, _ := json.Marshal(p)
	return b
}

// declares reports whether the client declared what an upstream→client
// request needs. Requests outside the mirrored capabilities (ping, and
// methods a later protocol adds) are not the gateway's to refuse here.
func (cc clientCapabilities) declares(method string, params json.RawMessage) bool {
	switch method {
	case "sampling/createMessage":
		return cc.caps["sampling"] != nil
	case "roots/list":
		return cc.caps["roots"] != nil
	case "elicitation/create":
		return cc.declaresElicitation(params)
	}
	return true
}

// declaresElicitation: "elicitation": {} declares the form mode only;
// the URL mode must be declared as "url".
func (cc clientCapabilities) declaresElicitation(params json.RawMessage) bool {
	var modes map[string]json.RawMessage
	if json.Unmarshal(cc.caps["elicitation"], &modes) != nil || modes == nil {
		return false
	}
	var p struct {
		Mode string `json:"mode"`
	}
	_ = json.Unmarshal(params, &p)
	switch p.Mode {
	case "", "form":
		return len(modes) == 0 || modes["form"] != nil
	case "url":
		return modes["url"] != nil
	}
	return false
}

// undeclaredError answers an upstream→client request the client never
// declared it handles; the client never sees it.
func undeclaredError(method string) *rpcError {
	return &rpcError{Code: jsonrpc.CodeMethodNotFound, Message: "the client did not declare the capability " + method + " needs"}
}
