package mcpstdio

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddy-nomos/nomos/internal/jsonrpc"
	"github.com/caddy-nomos/nomos/mcp"
)

// bridgeURL is the in-process address of the gateway's handler.
const bridgeURL = "http://127.0.0.1/mcp"

// bridge relays stdio messages to a Streamable HTTP handler in process:
// each message is one POST, answered with JSON or an SSE stream, and a GET
// stream carries what the server sends outside any request.
type bridge struct {
	h    http.Handler
	emit func([]byte)
	log  *slog.Logger

	mu           sync.Mutex
	session      string
	version      string
	streamCancel context.CancelFunc
	streamDone   chan struct{}
}

func (b *bridge) setVersion(v string) {
	b.mu.Lock()
	b.version = v
	b.mu.Unlock()
}

func (b *bridge) request(ctx context.Context, method string, body []byte) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, method, bridgeURL, bytes.NewReader(body))
	req.RemoteAddr = "127.0.0.1:0"
	req.Header.Set("Accept", "application/json, text/event-stream")
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.session != "" {
		req.Header.Set(mcp.HeaderSessionID, b.session)
	}
	if b.version != "" {
		req.Header.Set(mcp.HeaderProtocolVersion, b.version)
	}
	return req
}

// forward POSTs one message. Every message of the answer is emitted as it
// arrives; the response to id, if transform is set, is rewritten by it
// first. An HTTP-level refusal of a request becomes a JSON-RPC error.
func (b *bridge) forward(ctx context.Context, body []byte, id json.RawMessage, transform func(*message) []byte) {
	var reqID json.RawMessage
	var m message
	if json.Unmarshal(body, &m) == nil && m.IsRequest() {
		reqID = m.ID
	}
	emit := func(msg []byte) { b.emit(b.shape(msg, id, transform)) }
	w := newStreamWriter(emit)
	b.h.ServeHTTP(w, b.request(ctx, http.MethodPost, body))
	w.finish(reqID, emit)
	if m.Method == "initialize" && w.status == http.StatusOK {
		if sid := w.header.Get(mcp.HeaderSessionID); sid != "" {
			b.endSession(ctx)
			b.openStream(ctx, sid)
		}
	}
}

// shape applies transform to the response to id.
func (b *bridge) shape(msg []byte, id json.RawMessage, transform func(*message) []byte) []byte {
	if transform == nil {
		return msg
	}
	var m message
	if json.Unmarshal(msg, &m) != nil || !m.IsResponse() || !bytes.Equal(m.ID, id) {
		return msg
	}
	if out := transform(&m); out != nil {
		return out
	}
	return msg
}

// openStream binds the bridge to a new gateway session and opens its GET
// stream for server-initiated messages (list changes, log messages,
// sampling and elicitation requests outside a call).
func (b *bridge) openStream(ctx context.Context, sid string) {
	b.stopStream()
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	b.mu.Lock()
	b.session, b.streamCancel, b.streamDone = sid, cancel, done
	b.mu.Unlock()
	req := b.request(sctx, http.MethodGet, nil)
	req.Header.Set("Accept", "text/event-stream")
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				b.log.Error("mcp stdio: GET stream panicked", "panic", fmt.Sprint(p))
			}
		}()
		w := newStreamWriter(b.emit)
		b.h.ServeHTTP(w, req)
		if sctx.Err() == nil {
			b.log.Debug("mcp stdio: gateway GET stream ended", "status", w.status)
		}
	}()
}

func (b *bridge) stopStream() {
	b.mu.Lock()
	cancel, done := b.streamCancel, b.streamDone
	b.streamCancel, b.streamDone = nil, nil
	b.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		b.log.Warn("mcp stdio: gateway GET stream did not end")
	}
}

// close ends the gateway session, so dedicated upstream sessions end too.
func (b *bridge) close(ctx context.Context) {
	b.stopStream()
	b.endSession(ctx)
}

// endSession deletes the current gateway session, if any: a client that
// initializes again replaces it.
func (b *bridge) endSession(ctx context.Context) {
	b.mu.Lock()
	sid := b.session
	b.mu.Unlock()
	if sid == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	b.h.ServeHTTP(newStreamWriter(func([]byte) {}), b.request(ctx, http.MethodDelete, nil))
	b.mu.Lock()
	if b.session == sid {
		b.session = ""
	}
	b.mu.Unlock()
}

// streamWriter is the in-memory http.ResponseWriter of one bridged
// request: an SSE body is split into messages as it is written; any other
// body is kept until the handler returns.
type streamWriter struct {
	header  http.Header
	status  int
	sse     bool
	buf     bytes.Buffer
	emit    func([]byte)
	emitted int
}

func newStreamWriter(emit func([]byte)) *streamWriter {
	return &streamWriter{header: http.Header{}, emit: emit}
}

func (w *streamWriter) Header() http.Header { return w.header }

func (w *streamWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	w.sse = strings.HasPrefix(w.header.Get("Content-Type"), "text/event-stream")
}

func (w *streamWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.buf.Write(p)
	if w.sse {
		w.drainEvents()
	}
	return len(p), nil
}

// Flush implements http.Flusher; events are emitted as they complete.
func (w *streamWriter) Flush() {}

func (w *streamWriter) drainEvents() {
	for {
		i := bytes.Index(w.buf.Bytes(), []byte("\n\n"))
		if i < 0 {
			return
		}
		event := w.buf.Next(i + 2)
		if data := eventData(event); len(data) > 0 {
			w.send(data)
		}
	}
}

// eventData joins the data lines of one SSE event; comments and other
// fields are dropped.
func eventData(event []byte) []byte {
	var data [][]byte
	for _, line := range bytes.Split(event, []byte("\n")) {
		line = bytes.TrimSuffix(line, []byte("\r"))
		if rest, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = append(data, bytes.TrimPrefix(rest, []byte(" ")))
		}
	}
	return bytes.Join(data, []byte("\n"))
}

// send emits one message as a single compact line.
func (w *streamWriter) send(msg []byte) {
	var c bytes.Buffer
	if json.Compact(&c, msg) != nil {
		return
	}
	w.emitted++
	w.emit(c.Bytes())
}

// finish emits a JSON body, or turns an HTTP refusal of request reqID
// into a JSON-RPC error so the client is never left waiting.
func (w *streamWriter) finish(reqID json.RawMessage, emit func([]byte)) {
	if w.sse {
		w.drainEvents()
	} else if body := bytes.TrimSpace(w.buf.Bytes()); len(body) > 0 && isJSONRPC(body) {
		w.send(body)
	}
	if w.emitted > 0 || !jsonrpc.HasID(reqID) {
		return
	}
	var deny struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(w.buf.Bytes(), &deny)
	if deny.Reason == "" {
		deny.Reason = fmt.Sprintf("no answer (HTTP %d)", w.status)
	}
	code := jsonrpc.CodeInvalidRequest
	if w.status >= 500 {
		code = jsonrpc.CodeInternalError
	}
	emit(jsonrpc.ErrorResponse(reqID, code, "nomos gateway: "+deny.Reason, nil))
}

func isJSONRPC(body []byte) bool {
	var probe struct {
		JSONRPC string `json:"jsonrpc"`
	}
	return json.Unmarshal(body, &probe) == nil && probe.JSONRPC == "2.0"
}
