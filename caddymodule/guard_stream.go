package caddymodule

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-nomos/nomos/internal/redact"
	"github.com/caddy-nomos/nomos/policy"
)

// guardMaxHold bounds what the response filter holds back: an SSE event,
// or a line of a plain response, larger than this is not kept whole.
const guardMaxHold = 1 << 20

var (
	// errOutputLimit stops the upstream's copy once the output cap is
	// reached.
	errOutputLimit = errors.New("nomos_guard: output limit reached")
	// errUnfilterable stops a response the guard cannot redact.
	errUnfilterable = errors.New("nomos_guard: response cannot be redacted")
)

// filterWriter sits between next and the client. It redacts and caps the
// body as it streams: an SSE response event by event (each flushed as soon
// as it is complete), any other response in whole lines. Nothing is held
// beyond guardMaxHold, and the whole body is never buffered.
type filterWriter struct {
	mu       sync.Mutex // a flush timer may run beside the copy
	w        http.ResponseWriter
	red      *redact.Redactor // nil: the shaper redacts
	shaper   messageShaper    // MCP mode: shapes whole messages
	budget   outputBudget
	report   breakerDone
	slowness time.Duration
	start    time.Time
	ctx      context.Context

	status      int
	wroteHeader bool
	sse         bool
	held        []byte
	stop        error // set once nothing more may be written
	truncated   bool
	written     int64
}

func newFilterWriter(r *http.Request, w http.ResponseWriter, red *redact.Redactor, obl policy.Obligations, report breakerDone, slowness time.Duration) *filterWriter {
	fw := &filterWriter{w: w, red: red, report: report, slowness: slowness, start: time.Now(), ctx: r.Context()}
	if obl.OutputMaxBytes != nil {
		fw.budget.maxBytes = *obl.OutputMaxBytes
	}
	if obl.OutputMaxLines != nil {
		fw.budget.maxLines = *obl.OutputMaxLines
	}
	return fw
}

// redactorFor adds the decision's redact obligations to the app's rules.
func redactorFor(base *redact.Redactor, obl policy.Obligations) (*redact.Redactor, error) {
	return base.With(obl.Redact, nil)
}

func (fw *filterWriter) Header() http.Header { return fw.w.Header() }

// WriteHeader reports the upstream's answer to the breaker and prepares
// the stream: the length changes with redaction, and a compressed body
// cannot be redacted, so it is refused with 502.
func (fw *filterWriter) WriteHeader(status int) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.writeHeader(status)
}

func (fw *filterWriter) writeHeader(status int) {
	if fw.wroteHeader {
		return
	}
	if status < 200 {
		fw.w.WriteHeader(status)
		return
	}
	fw.wroteHeader, fw.status = true, status
	fw.reportOnce(outcomeFor(status >= 500 || fw.slowness > 0 && time.Since(fw.start) > fw.slowness))
	h := fw.w.Header()
	if enc := h.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") && mayHaveBody(status) {
		fw.refuse("upstream sent a " + enc + "-encoded response, which cannot be redacted")
		return
	}
	if fw.shaper != nil && mayHaveBody(status) && h.Get("Content-Type") != "" {
		// MCP mode reads the messages as UTF-8; a client must read the
		// same bytes the same way, so the type goes on without parameters.
		// A success in another charset is refused; an error status keeps
		// its status (a 404 tells the client to initialize again).
		media, params, err := mime.ParseMediaType(h.Get("Content-Type"))
		if cs, ok := params["charset"]; status/100 == 2 && (err != nil || ok && !strings.EqualFold(cs, "utf-8")) {
			fw.refuse("upstream sent a response of type " + strconv.Quote(h.Get("Content-Type")) + ", which cannot be read as UTF-8 messages")
			return
		}
		if err == nil {
			h.Set("Content-Type", media)
		} else {
			h.Del("Content-Type")
		}
	}
	h.Del("Content-Length")
	fw.sse = isEventStream(h.Get("Content-Type"))
	if fw.shaper != nil {
		fw.shaper.header(status, h)
	}
	fw.w.WriteHeader(status)
}

func mayHaveBody(status int) bool {
	return status != http.StatusNoContent && status != http.StatusNotModified
}

// refuse answers 502 in place of a response the filter cannot read.
func (fw *filterWriter) refuse(why string) {
	h := fw.w.Header()
	actionID := h.Get(headerActionID)
	for k := range h {
		h.Del(k)
	}
	h.Set(headerActionID, actionID)
	fw.status, fw.stop = http.StatusBadGateway, errUnfilterable
	_ = writeJSON(fw.w, http.StatusBadGateway, errorBody{Decision: policy.Deny,
		Reason: "UPSTREAM_ERROR: " + why})
}

func isEventStream(ct string) bool {
	media, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(media), "text/event-stream")
}

// Write filters p; it fails once the output cap is reached, which ends
// the upstream's copy.
func (fw *filterWriter) Write(p []byte) (int, error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if !fw.wroteHeader {
		fw.writeHeader(http.StatusOK)
	}
	if fw.stop != nil {
		return 0, fw.stop
	}
	fw.held = append(fw.held, p...)
	switch {
	case fw.sse:
		fw.drainEvents(false)
	case fw.shaper != nil: // a JSON message is shaped whole, at the end
		if len(fw.held) > guardMaxMessage {
			fw.held, fw.stop = nil, errUnfilterable
		}
	default:
		fw.drainLines(false)
	}
	if fw.stop != nil {
		return 0, fw.stop
	}
	return len(p), nil
}

// ReadFrom keeps io.Copy from bypassing the filter.
func (fw *filterWriter) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{fw}, r)
}

type writerOnly struct{ io.Writer }

// Flush passes complete output on; a partial line stays held.
func (fw *filterWriter) Flush() {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.flush()
}

func (fw *filterWriter) flush() {
	if fw.wroteHeader && fw.stop == nil {
		_ = http.NewResponseController(fw.w).Flush()
	}
}

// drainEvents emits every complete SSE event.
func (fw *filterWriter) drainEvents(final bool) {
	for fw.stop == nil {
		end := sseEventEnd(fw.held)
		if end < 0 && final && len(fw.held) > 0 {
			end = len(fw.held)
		}
		if end < 0 {
			if len(fw.held) > fw.maxHold() {
				fw.cut()
			}
			return
		}
		piece := fw.held[:end]
		fw.held = fw.held[end:]
		if fw.shaper != nil {
			piece = shapeEvent(piece, fw.shaper)
		}
		fw.emit(piece, true)
		fw.flush()
	}
}

// drainLines emits what can be redacted without splitting a secret.
func (fw *filterWriter) drainLines(final bool) {
	end := plainCut(fw.held, final)
	if end == 0 {
		return
	}
	piece := fw.held[:end]
	fw.held = fw.held[end:]
	fw.emit(piece, false)
}

// emit redacts then caps one piece; an SSE event is emitted whole or not
// at all.
func (fw *filterWriter) emit(piece []byte, whole bool) {
	text := string(piece)
	if fw.red != nil {
		text = fw.red.String(text)
	}
	out, cut := fw.budget.take(text, whole)
	if out != "" {
		n, err := io.WriteString(fw.w, out)
		fw.written += int64(n)
		if err != nil {
			fw.stop = err
			return
		}
	}
	if cut {
		fw.cut()
	}
}

// cut ends the output: what was sent stays sent, nothing more follows.
func (fw *filterWriter) cut() {
	fw.truncated, fw.stop, fw.held = true, errOutputLimit, nil
	_ = http.NewResponseController(fw.w).Flush()
}

// finish emits what is still held once next returned and reports a
// response that never got a status line to the breaker.
func (fw *filterWriter) finish(err error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if !fw.wroteHeader {
		switch {
		case canceled(fw.ctx, err):
			fw.reportOnce(breakerExcluded)
		default:
			fw.reportOnce(outcomeFor(err != nil && statusOf(err) >= 500))
		}
		if err == nil {
			fw.status = http.StatusOK
		} else {
			fw.status = statusOf(err)
		}
		return
	}
	switch {
	case fw.stop != nil:
	case fw.sse:
		fw.drainEvents(true)
	case fw.shaper != nil:
		if len(fw.held) > 0 {
			fw.emit(fw.shaper.message(fw.held), true)
		}
	default:
		fw.drainLines(true)
	}
}

// maxHold is the largest SSE event held whole: one MCP message in MCP
// mode, guardMaxHold otherwise.
func (fw *filterWriter) maxHold() int {
	if fw.shaper != nil {
		return guardMaxMessage
	}
	return guardMaxHold
}

// abandon is finish for a next that panicked (reverse_proxy aborts a
// broken stream that way).
func (fw *filterWriter) abandon() {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if canceled(fw.ctx, nil) {
		fw.reportOnce(breakerExcluded)
	}
	fw.reportOnce(breakerFailure)
}

// reportOnce tells the breaker how the upstream answered; the first
// report wins, so a long stream settles a half-open probe at its status
// line rather than at its end.
func (fw *filterWriter) reportOnce(o breakerOutcome) {
	if fw.report != nil {
		fw.report(o)
		fw.report = nil
	}
}

// outputBudget is the output cap of the decision's obligations.
type outputBudget struct {
	maxBytes, maxLines int64
	bytes, lines       int64
}

// take returns the part of s that fits and whether s was cut. A whole
// piece that does not fit is dropped entirely.
func (b *outputBudget) take(s string, whole bool) (string, bool) {
	if s == "" {
		return "", false
	}
	if b.maxBytes > 0 && b.bytes >= b.maxBytes || b.maxLines > 0 && b.lines >= b.maxLines {
		return "", true
	}
	out, cut := redact.Cap(s, remaining(b.maxBytes, b.bytes), remaining(b.maxLines, b.lines))
	if cut && whole {
		return "", true
	}
	b.bytes += int64(len(out))
	b.lines += int64(strings.Count(out, "\n"))
	return out, cut
}

func remaining(limit, used int64) int64 {
	if limit <= 0 {
		return 0
	}
	return limit - used
}

// sseEventEnd returns the offset just past the first complete event (the
// blank line that ends it), or -1. Lines end in "\r\n", "\n" or "\r"; a
// trailing "\r" waits for the next byte.
func sseEventEnd(b []byte) int {
	lineStart := 0
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\n' && c != '\r' {
			continue
		}
		next := i + 1
		if c == '\r' {
			if next >= len(b) {
				return -1
			}
			if b[next] == '\n' {
				next++
			}
		}
		if i == lineStart {
			return next // an empty line ends the event
		}
		lineStart = next
		i = next - 1
	}
	return -1
}

// plainCut is how much of a plain response can be redacted now: whole
// lines, except that a private key block whose end line has not arrived is
// held from the start of its line. A line longer than guardMaxHold is cut
// after its last delimiter, where no token-shaped secret can straddle.
func plainCut(b []byte, final bool) int {
	if final {
		return len(b)
	}
	cut := bytes.LastIndexByte(b, '\n') + 1
	if len(b) >= guardMaxHold {
		if cut == 0 {
			cut = lastDelimiter(b) + 1
		}
		if cut == 0 {
			cut = len(b)
		}
		return cut
	}
	if k := redact.OpenBlock(string(b[:cut])); k >= 0 {
		return bytes.LastIndexByte(b[:k], '\n') + 1
	}
	return cut
}

func lastDelimiter(b []byte) int {
	return bytes.LastIndexAny(b, " \t\",;<>()[]{}'")
}

// canceled reports a client that went away, which says nothing about the
// upstream.
func canceled(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, context.Canceled)
}
