package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/jsonrpc"
	redactpkg "github.com/caddy-nomos/nomos/internal/redact"
)

// Nomos JSON-RPC error codes (the standard ones are in internal/jsonrpc).
const (
	CodePolicyDenied     = -32001
	CodeUpstreamUnavail  = -32010
	CodeUpstreamTimeout  = -32011
	CodeUpstreamCanceled = -32012
)

// Sentinel errors of the upstream side. They decide breaker accounting.
var (
	// ErrUpstreamUnavailable: the upstream could not be reached, crashed,
	// or its breaker is open.
	ErrUpstreamUnavailable = errors.New("upstream unavailable")
	// ErrUpstreamTimeout: a per-stage timeout expired.
	ErrUpstreamTimeout = errors.New("upstream timeout")
	// ErrUpstreamProtocol: the upstream answered something that is not MCP.
	ErrUpstreamProtocol = errors.New("upstream protocol error")
	// ErrBreakerOpen: the upstream's breaker refused the call.
	ErrBreakerOpen = errors.New("upstream breaker open")
)

// upstreamError carries the failure class of an upstream call.
type upstreamError struct {
	kind error
	msg  string
	err  error
}

func (e *upstreamError) Error() string {
	if e.err == nil {
		return e.msg
	}
	return e.msg + ": " + e.err.Error()
}

func (e *upstreamError) Unwrap() []error { return []error{e.kind, e.err} }

func newUpstreamError(kind error, err error, format string, a ...any) error {
	return &upstreamError{kind: kind, msg: fmt.Sprintf(format, a...), err: err}
}

// classify maps an upstream call error to a client-facing class and the
// audit error class.
func classify(err error) (class, errClass string) {
	switch {
	case err == nil:
		return audit.ResultSuccess, ""
	case errors.Is(err, ErrBreakerOpen):
		return audit.ResultUpstreamUnavailable, "breaker_open"
	case errors.Is(err, context.Canceled):
		return audit.ResultUpstreamCanceled, "canceled"
	case errors.Is(err, ErrUpstreamTimeout), errors.Is(err, context.DeadlineExceeded):
		return audit.ResultUpstreamTimeout, "timeout"
	case errors.Is(err, ErrUpstreamProtocol):
		return audit.ResultUpstreamUnavailable, "protocol"
	default:
		return audit.ResultUpstreamUnavailable, "transport"
	}
}

// rpcCodeFor is the JSON-RPC error code of a class.
func rpcCodeFor(class string) int {
	switch class {
	case audit.ResultUpstreamTimeout:
		return CodeUpstreamTimeout
	case audit.ResultUpstreamCanceled:
		return CodeUpstreamCanceled
	default:
		return CodeUpstreamUnavail
	}
}

// maxUpstreamErrorMessage bounds the upstream error text a client sees.
const maxUpstreamErrorMessage = 512

// upstreamRPCErrorFor is the JSON-RPC error an upstream answered, as a
// client may see it: the upstream's code and its message, redacted and
// capped; the data member (stack traces, internal addresses) goes to the
// log only.
func (g *Gateway) upstreamRPCErrorFor(id json.RawMessage, server string, rerr *rpcError, redact func(string) string) []byte {
	if len(rerr.Data) > 0 {
		g.log.Info("mcp upstream error data withheld from the client", "upstream_server", server, "code", rerr.Code, "data", string(rerr.Data))
	}
	return ClientError(id, rerr, redact)
}

// ClientError is an upstream's JSON-RPC error as a client may see it: the
// upstream's code and its message, redacted and capped, without the data
// member (stack traces, internal addresses), which the caller may log.
func ClientError(id json.RawMessage, rerr *jsonrpc.Error, redact func(string) string) []byte {
	msg := rerr.Message
	if redact != nil {
		msg = redact(msg)
	}
	msg, _ = redactpkg.Cap(msg, maxUpstreamErrorMessage, 0)
	return jsonrpc.RawError(id, &rpcError{Code: rerr.Code, Message: msg})
}
