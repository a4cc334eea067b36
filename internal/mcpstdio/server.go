package mcpstdio

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/jsonrpc"
	"github.com/caddy-nomos/nomos/internal/mcpbuiltins"
	"github.com/caddy-nomos/nomos/mcp"
	"github.com/caddy-nomos/nomos/policy/action"
)

// Defaults of Config.
const (
	DefaultMaxLineBytes = 4 << 20
	DefaultMaxInFlight  = 32
)

// Processor runs one action envelope through the Nomos pipeline and
// records the calls refused before it (*service.Service).
type Processor = mcpbuiltins.Processor

// Config wires a Server. Processor is required.
type Config struct {
	// Processor decides, records and executes the built-in tools' actions.
	Processor Processor
	// Identity is bound to every action; it comes from configuration,
	// never from the client.
	Identity action.Identity
	// ActionTypes are the built-in action types the executor runs; only
	// their tools are listed. Default: none (only nomos_capabilities).
	ActionTypes []string
	// Capabilities returns what nomos_capabilities reports. Default: the
	// identity and the listed tools only.
	Capabilities func() map[string]any
	// Gateway, when set, receives every message the built-in tools do not
	// answer, as in-memory Streamable HTTP requests. Default: none.
	Gateway http.Handler
	// ServerName and Version are the serverInfo of initialize. Default:
	// nomos, dev.
	ServerName, Version string
	// MaxLineBytes caps one stdin message. Default: 4 MiB.
	MaxLineBytes int
	// MaxInFlight bounds concurrently handled requests. Default: 32.
	MaxInFlight int
	// Logger receives diagnostics; it must not write to the protocol
	// stream. Default: discard.
	Logger *slog.Logger
}

// Server is one stdio MCP session. Serve may be called once.
type Server struct {
	cfg     Config
	tools   *mcpbuiltins.Set
	traceID string
	out     *lineWriter
	bridge  *bridge

	mu       sync.Mutex
	inflight map[string]context.CancelFunc
}

// New validates cfg and fills defaults.
func New(cfg Config) (*Server, error) {
	if cfg.Processor == nil {
		return nil, errors.New("mcp stdio: a processor is required")
	}
	if cfg.Identity.Principal == "" {
		return nil, errors.New("mcp stdio: a principal is required")
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "nomos"
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.MaxLineBytes <= 0 {
		cfg.MaxLineBytes = DefaultMaxLineBytes
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tools, err := mcpbuiltins.New(mcpbuiltins.Config{Processor: cfg.Processor, ActionTypes: cfg.ActionTypes,
		Capabilities: cfg.Capabilities, UpstreamsRelayed: cfg.Gateway != nil})
	if err != nil {
		return nil, fmt.Errorf("mcp stdio: %w", err)
	}
	return &Server{cfg: cfg, tools: tools, traceID: "mcp-stdio-" + randomHex(8),
		inflight: map[string]context.CancelFunc{}}, nil
}

// message is the shared JSON-RPC message type.
type message = jsonrpc.Message

// Serve reads messages from in until EOF or ctx ends and writes every
// answer to out, one JSON message per line. Requests run concurrently;
// at EOF the ones in flight finish before Serve returns.
func (s *Server) Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	s.out = &lineWriter{w: out, fail: cancel}
	if s.cfg.Gateway != nil {
		s.bridge = &bridge{h: s.cfg.Gateway, emit: s.out.write, log: s.cfg.Logger}
	}
	lines := make(chan []byte)
	readErr := make(chan error, 1)
	go func() { readErr <- readLines(ctx, in, s.cfg.MaxLineBytes, lines, s.tooLong) }()
	var wg sync.WaitGroup
	sem := make(chan struct{}, s.cfg.MaxInFlight)
	err := s.loop(ctx, lines, readErr, &wg, sem)
	wg.Wait()
	if s.bridge != nil {
		s.bridge.close(context.WithoutCancel(ctx))
	}
	if cause := context.Cause(ctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		err = cause
	}
	return err
}

func (s *Server) loop(ctx context.Context, lines <-chan []byte, readErr <-chan error, wg *sync.WaitGroup, sem chan struct{}) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			return err
		case line := <-lines:
			s.handleLine(ctx, line, wg, sem)
		}
	}
}

// tooLong answers a message over the line cap; it was not read.
func (s *Server) tooLong() {
	s.out.write(jsonrpc.ErrorResponse(nil, jsonrpc.CodeInvalidRequest, fmt.Sprintf("message exceeds %d bytes", s.cfg.MaxLineBytes), nil))
}

// handleLine dispatches one message. initialize and notifications are
// handled in order; other requests run concurrently.
func (s *Server) handleLine(ctx context.Context, line []byte, wg *sync.WaitGroup, sem chan struct{}) {
	var m message
	if len(line) > 0 && line[0] == '[' {
		s.out.write(jsonrpc.ErrorResponse(nil, jsonrpc.CodeInvalidRequest, "JSON-RPC batches are not supported", nil))
		return
	}
	if err := json.Unmarshal(line, &m); err != nil || m.JSONRPC != "2.0" {
		s.out.write(jsonrpc.ErrorResponse(nil, jsonrpc.CodeParseError, "invalid JSON-RPC message", nil))
		return
	}
	// A message with duplicate or case-variant keys could read differently
	// here and in the gateway or upstream it is forwarded to, as in nomos_mcp.
	if err := action.CheckStrictJSON(line); err != nil {
		s.out.write(jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeInvalidRequest, "invalid JSON-RPC message: "+err.Error(), nil))
		return
	}
	switch {
	case m.IsRequest() && m.Method == "initialize":
		s.initialize(ctx, &m, line)
	case m.IsRequest():
		s.startRequest(ctx, &m, line, wg, sem)
	case m.IsNotification():
		s.notify(ctx, &m, line)
	case m.IsResponse() && s.bridge != nil:
		s.bridge.forward(ctx, line, nil, nil)
	}
}

func (s *Server) startRequest(ctx context.Context, m *message, raw []byte, wg *sync.WaitGroup, sem chan struct{}) {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	rctx, cancel := context.WithCancel(ctx)
	key := string(m.ID)
	s.mu.Lock()
	s.inflight[key] = cancel
	s.mu.Unlock()
	wg.Go(func() {
		defer func() {
			if p := recover(); p != nil {
				s.cfg.Logger.Error("mcp stdio: request panicked", "method", m.Method, "panic", fmt.Sprint(p))
				s.out.write(jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeInternalError, "internal error", nil))
			}
			s.mu.Lock()
			delete(s.inflight, key)
			s.mu.Unlock()
			cancel()
			<-sem
		}()
		s.handleRequest(rctx, m, raw)
	})
}

// notify cancels a local request named by notifications/cancelled and
// relays every notification to the gateway.
func (s *Server) notify(ctx context.Context, m *message, raw []byte) {
	if m.Method == "notifications/cancelled" {
		var p struct {
			RequestID json.RawMessage `json:"requestId"`
		}
		if json.Unmarshal(m.Params, &p) == nil {
			s.mu.Lock()
			cancel := s.inflight[string(p.RequestID)]
			s.mu.Unlock()
			if cancel != nil {
				cancel()
			}
		}
	}
	if s.bridge != nil {
		s.bridge.forward(ctx, raw, nil, nil)
	}
}

func (s *Server) handleRequest(ctx context.Context, m *message, raw []byte) {
	switch m.Method {
	case "ping":
		s.reply(ctx, m.ID, struct{}{})
	case "tools/list":
		s.listTools(ctx, m, raw)
	case "tools/call":
		s.callTool(ctx, m, raw)
	default:
		if s.bridge != nil {
			s.bridge.forward(ctx, raw, nil, nil)
			return
		}
		s.out.write(jsonrpc.ErrorResponse(m.ID, jsonrpc.CodeMethodNotFound, "method not found: "+m.Method, nil))
	}
}

// reply sends a result unless the client cancelled the request.
func (s *Server) reply(ctx context.Context, id json.RawMessage, result any) {
	if ctx.Err() != nil {
		return
	}
	b, err := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
	if err != nil {
		b = jsonrpc.ErrorResponse(id, jsonrpc.CodeInternalError, "internal error", nil)
	}
	s.out.write(b)
}

// initialize answers locally without a gateway; with one, the gateway
// opens its session and the answer is decorated with the built-in tools.
func (s *Server) initialize(ctx context.Context, m *message, raw []byte) {
	if s.bridge == nil {
		var p struct {
			ProtocolVersion string `json:"protocolVersion"`
		}
		_ = json.Unmarshal(m.Params, &p)
		s.reply(ctx, m.ID, map[string]any{
			"protocolVersion": negotiate(p.ProtocolVersion),
			"capabilities":    map[string]any{"tools": map[string]any{}},
			"serverInfo":      s.serverInfo(),
		})
		return
	}
	s.bridge.forward(ctx, raw, m.ID, s.decorateInit)
}

func negotiate(asked string) string {
	if slices.Contains(mcp.SupportedVersions, asked) {
		return asked
	}
	return mcp.SupportedVersions[0]
}

func (s *Server) serverInfo() map[string]string {
	return map[string]string{"name": s.cfg.ServerName, "version": s.cfg.Version}
}

// decorateInit makes the gateway's initialize result this server's: the
// tools capability is always on, and serverInfo names Nomos because the
// client sees the built-in tools next to the upstreams'.
func (s *Server) decorateInit(m *message) []byte {
	var r map[string]json.RawMessage
	if m.Error != nil || json.Unmarshal(m.Result, &r) != nil {
		return nil
	}
	mcp.DeclareTools(r)
	r["serverInfo"], _ = json.Marshal(s.serverInfo())
	var version string
	_ = json.Unmarshal(r["protocolVersion"], &version)
	s.bridge.setVersion(version)
	return jsonrpc.Result(m.ID, r)
}

// listTools lists the built-in tools first, then the gateway's.
func (s *Server) listTools(ctx context.Context, m *message, raw []byte) {
	var p struct {
		Cursor string `json:"cursor"`
	}
	_ = json.Unmarshal(m.Params, &p)
	if s.bridge == nil {
		s.reply(ctx, m.ID, map[string]any{"tools": s.tools.Tools()})
		return
	}
	if p.Cursor != "" {
		s.bridge.forward(ctx, raw, nil, nil)
		return
	}
	s.bridge.forward(ctx, raw, m.ID, s.prependBuiltins)
}

// prependBuiltins merges the built-in tools into the gateway's first page.
// A failed gateway listing still shows the built-in tools.
func (s *Server) prependBuiltins(m *message) []byte {
	var r map[string]json.RawMessage
	if m.Error != nil || json.Unmarshal(m.Result, &r) != nil || r == nil {
		s.cfg.Logger.Warn("mcp stdio: upstream tools/list failed; listing the built-in tools only", "error", fmt.Sprint(m.Error))
		r = map[string]json.RawMessage{}
	}
	var upstream []json.RawMessage
	_ = json.Unmarshal(r["tools"], &upstream)
	var tools []any
	for _, t := range s.tools.Tools() {
		tools = append(tools, t)
	}
	for _, t := range upstream {
		var named struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(t, &named)
		if s.tools.Has(named.Name) {
			s.cfg.Logger.Warn("mcp stdio: an upstream tool is hidden by a built-in tool of the same name", "tool", named.Name)
			continue
		}
		tools = append(tools, t)
	}
	r["tools"], _ = json.Marshal(tools)
	return jsonrpc.Result(m.ID, r)
}

// callTool runs a built-in tool, or relays the call to the gateway.
func (s *Server) callTool(ctx context.Context, m *message, raw []byte) {
	var p struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if json.Unmarshal(m.Params, &p) != nil || p.Name == "" {
		s.refuse(ctx, m.ID, "tools/call needs a tool name")
		return
	}
	if res, ok := s.tools.Run(ctx, p.Name, p.Arguments, s.caller()); ok {
		s.reply(ctx, m.ID, res)
		return
	}
	if s.bridge != nil {
		s.bridge.forward(ctx, raw, nil, nil)
		return
	}
	s.refuse(ctx, m.ID, "unknown tool: "+p.Name)
}

// refuse records and answers a tools/call refused before any decision,
// as the gateway does for the tools it relays.
func (s *Server) refuse(ctx context.Context, id json.RawMessage, reason string) {
	env := action.NewEnvelope(action.TypeMCPCall, "", nil, s.traceID)
	s.cfg.Processor.Reject(context.WithoutCancel(ctx), env, s.cfg.Identity, s.meta(), audit.ResultValidationError, reason)
	s.out.write(jsonrpc.ErrorResponse(id, jsonrpc.CodeInvalidParams, reason, nil))
}

// caller is this session's identity, trace and transport evidence for
// the built-in tools.
func (s *Server) caller() mcpbuiltins.Caller {
	return mcpbuiltins.Caller{Identity: s.cfg.Identity, TraceID: s.traceID, Meta: s.meta()}
}

// meta is the transport evidence of every action of this door.
func (s *Server) meta() map[string]any {
	return map[string]any{"downstream_transport": mcp.DownstreamStdio}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(errors.New("crypto/rand failed"))
	}
	return hex.EncodeToString(b)
}

// lineWriter serializes messages onto out, one per line. A failed write
// (the client went away) ends the session.
type lineWriter struct {
	mu   sync.Mutex
	w    io.Writer
	fail context.CancelCauseFunc
	dead bool
}

func (l *lineWriter) write(msg []byte) {
	if len(msg) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead {
		return
	}
	buf := make([]byte, 0, len(msg)+1)
	buf = append(append(buf, msg...), '\n')
	if _, err := l.w.Write(buf); err != nil {
		l.dead = true
		l.fail(fmt.Errorf("mcp stdio: writing stdout: %w", err))
	}
}

// readLines sends each non-empty line of in to lines. A line over max
// bytes is skipped and reported through tooLong.
func readLines(ctx context.Context, in io.Reader, max int, lines chan<- []byte, tooLong func()) error {
	r := bufio.NewReaderSize(in, 64<<10)
	for {
		line, over, err := readLine(r, max)
		if over {
			tooLong()
		} else if line = trimSpace(line); len(line) > 0 {
			select {
			case lines <- line:
			case <-ctx.Done():
				return nil
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mcp stdio: reading stdin: %w", err)
		}
	}
}

// readLine reads up to the next newline, keeping at most max bytes.
func readLine(r *bufio.Reader, max int) ([]byte, bool, error) {
	var line []byte
	over := false
	for {
		chunk, isPrefix, err := r.ReadLine()
		if !over && len(line)+len(chunk) > max {
			over, line = true, nil
		}
		if !over {
			line = append(line, chunk...)
		}
		if err != nil || !isPrefix {
			return line, over, err
		}
	}
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// ErrLocked reports a file another stdio server already writes.
var ErrLocked = errors.New("locked")
