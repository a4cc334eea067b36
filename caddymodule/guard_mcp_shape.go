package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/jsonrpc"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy/action"
)

// guardMaxMessage bounds one MCP message the guard shapes: a JSON body, or
// one SSE event. A larger one is not delivered and the connection ends.
const guardMaxMessage = 4 << 20

// messageShaper shapes the messages of a response one at a time; the
// filterWriter hands it each SSE event's data, or a JSON body whole.
type messageShaper interface {
	// header sees the status and headers before they are sent.
	header(status int, h http.Header)
	// message returns what to send in place of data; nil drops it.
	message(data []byte) []byte
}

// mcpExchange shapes the response to one MCP request through the guard,
// as nomos_mcp shapes what it relays: the answer to a governed request
// redacted and capped by its decision, lists filtered by policy, the
// upstream's sampling and elicitation requests governed on mcp.Path.
type mcpExchange struct {
	q      *mcpRequest
	sid    string
	gov    *governedCall   // nil: nothing was decided on the request
	reqID  json.RawMessage // the id of the request answered; nil for GET
	method string
	bindTo *mcpBindings // initialize: bind the issued session

	// set while the response passes, read once next returned
	answered, rpcErr, toolErr, breakerOpen bool
	sent                                   bool // the status line reached the client
	status                                 int
	stop                                   error
	panicked                               any
}

func (x *mcpExchange) header(status int, h http.Header) {
	if sid := h.Get(mcp.HeaderSessionID); x.bindTo != nil && sid != "" && status/100 == 2 {
		x.bindTo.bind(sid, x.q.id)
	}
}

// message shapes one JSON-RPC message. The upstream's messages are
// decoded as strictly as the client's: a message the guard cannot read
// exactly as a client might (duplicate keys, not JSON-RPC) is never sent
// on; in place of the answer the client gets an error.
func (x *mcpExchange) message(data []byte) []byte {
	m, err := mcp.DecodeMessage(data)
	if err != nil {
		return x.unreadable(err)
	}
	switch {
	case m.IsResponse() && x.reqID != nil && sameID(m.ID, x.reqID):
		x.answered = true
		return x.answer(m, data)
	case m.IsResponse():
		// Only the answer to this request was decided and can be shaped.
		// Any other response (a GET stream replaying an earlier call's
		// result after Last-Event-ID, an id this request did not send)
		// would reach the client unredacted, uncapped and unfiltered.
		x.q.h.logger.Warn("guard dropped an upstream response that does not answer this request",
			zap.String("guard", x.q.h.Name), zap.String("id", string(m.ID)))
		return nil
	case m.IsRequest():
		return x.serverRequest(m, data)
	}
	// Notifications (progress, log messages, resource updates) are the
	// server's output too.
	return mcp.RedactMessage(data, x.redactor())
}

// unreadable answers the request once with an error when the upstream
// sent something that is not a JSON-RPC message; later ones are dropped.
func (x *mcpExchange) unreadable(err error) []byte {
	x.q.h.logger.Warn("guard dropped an upstream message that is not strict JSON-RPC", zap.String("guard", x.q.h.Name), zap.Error(err))
	if x.reqID == nil || x.answered {
		return nil
	}
	x.answered, x.rpcErr = true, true
	return jsonrpc.ErrorResponse(x.reqID, mcp.CodeUpstreamUnavail, audit.ResultUpstreamError+": the upstream's answer is not a valid JSON-RPC message", nil)
}

func sameID(a, b json.RawMessage) bool {
	var ca, cb bytes.Buffer
	return json.Compact(&ca, a) == nil && json.Compact(&cb, b) == nil && bytes.Equal(ca.Bytes(), cb.Bytes())
}

// answer shapes the response to the request: an error without its data,
// a list filtered, a governed result redacted and capped.
func (x *mcpExchange) answer(m *jsonrpc.Message, data []byte) []byte {
	if m.Error != nil {
		x.rpcErr = true
		var redact func(string) string
		if x.gov != nil {
			redact = x.gov.res.Redact
		}
		return mcp.ClientError(m.ID, m.Error, redact)
	}
	server, id := x.q.h.MCP.Server, x.q.id
	switch x.method {
	case "tools/list":
		shown := toolListing{}
		out := x.filterList(m, "tools", "name", func(name string, item map[string]json.RawMessage) mcp.AuthzRequest {
			fp := mcp.ToolFingerprint(name, item)
			if len(shown) < maxListedTools {
				shown[name] = fp
			}
			return mcp.NewRequest(id, action.TypeMCPCall, server, []string{name}, nil).WithToolFingerprint(fp)
		})
		if x.sid != "" && !x.rpcErr {
			x.q.h.mcp.sessions.listed(x.sid, shown, hasCursor(x.q.msg.Params))
		}
		return out
	case "prompts/list":
		return x.filterList(m, "prompts", "name", func(name string, _ map[string]json.RawMessage) mcp.AuthzRequest {
			return mcp.PromptRequest(id, server, name, nil)
		})
	case "resources/list":
		return x.filterList(m, "resources", "uri", func(uri string, _ map[string]json.RawMessage) mcp.AuthzRequest {
			return mcp.ResourceRequest(id, server, uri)
		})
	}
	if x.gov == nil {
		return data
	}
	shaped, isErr := mcp.ShapeResult(m.Result, x.gov.res, x.gov.capKey)
	x.toolErr = isErr && x.method == "tools/call"
	return jsonrpc.Result(m.ID, shaped)
}

// filterList keeps the items the caller could use; a tools/list is
// recorded as mcp.tools_list. A list that cannot be read is refused.
func (x *mcpExchange) filterList(m *jsonrpc.Message, key, field string, request func(string, map[string]json.RawMessage) mcp.AuthzRequest) []byte {
	var result map[string]json.RawMessage
	var items []json.RawMessage
	if json.Unmarshal(m.Result, &result) != nil || json.Unmarshal(result[key], &items) != nil {
		x.rpcErr = true
		return jsonrpc.ErrorResponse(m.ID, mcp.CodeUpstreamUnavail, audit.ResultUpstreamError+": the upstream's list could not be read", nil)
	}
	ctx, path := x.q.r.Context(), x.q.h.mcp.path
	kept, shown, hidden := path.VisibleItems(ctx, items, field, request)
	if key == "tools" {
		meta := x.q.inSession(mcp.AuthzRequest{}, x.sid, "", "").Metadata
		path.Listed(ctx, x.q.id, meta, qualified(x.q.h.MCP.Server, shown), qualified(x.q.h.MCP.Server, hidden))
	}
	result[key], _ = json.Marshal(kept)
	return jsonrpc.Result(m.ID, result)
}

// hasCursor reports whether list params ask for a later page.
func hasCursor(params json.RawMessage) bool {
	var p struct {
		Cursor json.RawMessage `json:"cursor"`
	}
	return json.Unmarshal(params, &p) == nil && len(p.Cursor) > 0 && string(p.Cursor) != "null"
}

// qualified names tools "<server>/<tool>", as mcp.tools_list records them.
func qualified(server string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = server + "/" + n
	}
	return out
}

// redactor is what the upstream's messages on this exchange are redacted
// with: the decision's rules (the app's and its redact obligations), or
// the app's alone on an exchange nothing was decided on.
func (x *mcpExchange) redactor() func(string) string {
	if x.gov != nil && x.gov.res.Redact != nil {
		return x.gov.res.Redact
	}
	return x.q.h.app.red.String
}

// serverRequest governs an upstream→client request: sampling and
// elicitation go on mcp.Path; a refused one never reaches the client, and
// the upstream gets the refusal as the client's answer.
func (x *mcpExchange) serverRequest(m *jsonrpc.Message, data []byte) []byte {
	// A server request is the server's output too: it is redacted with the
	// rules of the exchange it arrives on (the governed call's, or the
	// app's), and an allowed sampling or elicitation also with its own.
	redact := x.redactor()
	req, governed := mcp.ServerRequest(x.q.id, x.q.h.MCP.Server, m.Method, m.Params)
	if !governed {
		return mcp.RedactMessage(data, redact)
	}
	req = x.q.inSession(req, x.sid, "upstream_method", m.Method)
	res, ok := x.q.h.mcp.path.Run(x.q.r.Context(), req, func(mcp.AuthzResult) mcp.Outcome {
		return mcp.Outcome{Classification: audit.ResultSuccess} // relayed to the client
	})
	if ok {
		if own := res.Redact; own != nil {
			return mcp.RedactMessage(data, func(s string) string { return redact(own(s)) })
		}
		return mcp.RedactMessage(data, redact)
	}
	x.q.answerUpstream(m.ID, mcp.DeniedErrorOf(res))
	return nil
}

// answerUpstreamTimeout bounds the POST that carries a refusal upstream.
const answerUpstreamTimeout = 10 * time.Second

// answerUpstream POSTs e to the upstream through next as the client's
// answer to its request id, on the request's session.
func (q *mcpRequest) answerUpstream(id json.RawMessage, e *jsonrpc.Error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(q.r.Context()), answerUpstreamTimeout)
	defer cancel()
	body := jsonrpc.RawError(id, e)
	r := q.r.Clone(ctx)
	r.Method, r.Body, r.ContentLength = http.MethodPost, newBodyReader(body), int64(len(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json, text/event-stream")
	r.Header.Del("Mcp-Method")
	r.Header.Del("Mcp-Name")
	r.Header.Del("Last-Event-ID")
	if err := q.next.ServeHTTP(discardWriter{h: http.Header{}}, r); err != nil {
		q.h.logger.Warn("guard could not answer the upstream's request", zap.String("guard", q.h.Name), zap.Error(err))
	}
}

// discardWriter takes a response nobody reads.
type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}

// outcome classifies how a governed request ended, for its completion.
func (x *mcpExchange) outcome(ctx context.Context, err error) mcp.Outcome {
	switch {
	case x.breakerOpen:
		return mcp.Outcome{Classification: audit.ResultUpstreamUnavailable, ErrorClass: "breaker_open"}
	case canceled(ctx, err):
		return mcp.Outcome{Classification: audit.ResultUpstreamCanceled, ErrorClass: "canceled"}
	case err != nil:
		return mcp.Outcome{Classification: errorClass(err), ErrorClass: "transport"}
	case x.panicked != nil || x.stop != nil || x.status >= 500 || !x.answered:
		return mcp.Outcome{Classification: audit.ResultUpstreamError, ErrorClass: "protocol"}
	case x.rpcErr:
		return mcp.Outcome{Classification: audit.ResultUpstreamError, ErrorClass: "rpc"}
	case x.toolErr:
		return mcp.Outcome{Classification: audit.ResultToolError}
	}
	return mcp.Outcome{Classification: audit.ResultSuccess}
}

// rethrow ends the response as next or the filter asked, once the
// outcome is recorded: a panic goes on, a response that could not be
// delivered whole ends the connection.
func (x *mcpExchange) rethrow() {
	if x == nil {
		return
	}
	if x.panicked != nil {
		panic(x.panicked)
	}
	if x.stop != nil {
		panic(http.ErrAbortHandler)
	}
}

// shapeEvent rebuilds one SSE event from what the guard read of it: its
// data shaped as one message, and only the id, retry and event fields a
// client acts on. Nothing else of the server's bytes goes on (comments,
// unknown fields, a byte order mark a client would strip before reading
// "data"), so a client can read nothing the guard did not. An event with
// no data keeps its fields, a comment (a keep-alive) becomes a bare ":",
// and nil drops the event.
func shapeEvent(event []byte, s messageShaper) []byte {
	text := strings.ReplaceAll(strings.ReplaceAll(string(event), "\r\n", "\n"), "\r", "\n")
	text = strings.TrimPrefix(text, "\uFEFF")
	var data []string
	var b bytes.Buffer
	comment := false
	for _, line := range strings.Split(text, "\n") {
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case line != "" && field == "":
			comment = true
		case field == "data":
			data = append(data, value)
		case field == "id" && !strings.ContainsRune(value, 0),
			field == "retry" && value != "" && strings.Trim(value, "0123456789") == "",
			field == "event" && value != "":
			b.WriteString(field + ": " + value + "\n")
		}
	}
	if joined := strings.Join(data, "\n"); joined != "" {
		out := s.message([]byte(joined))
		if out == nil {
			return nil
		}
		b.WriteString("data: ")
		b.Write(bytes.ReplaceAll(out, []byte("\n"), []byte("\ndata: ")))
		b.WriteString("\n")
	} else if len(data) > 0 {
		// A stream's priming event (an id and empty data): some clients
		// (eventsource-parser, so the TypeScript SDK) take its id only
		// from an event that has a data line.
		b.WriteString("data:\n")
	}
	if b.Len() == 0 {
		if comment {
			return []byte(":\n\n")
		}
		return nil
	}
	b.WriteString("\n")
	return b.Bytes()
}
