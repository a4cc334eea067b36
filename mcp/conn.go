package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
)

// conn is one upstream MCP session over a mark3labs/mcp-go transport. A
// stdio upstream has one conn shared by every downstream session; a remote
// upstream has one conn per downstream session (dedicated), plus a control
// conn that keeps the catalog.
type conn struct {
	up         *Upstream
	t          transport.Interface
	dedicated  *session             // nil for a shared conn
	killGroup  func(syscall.Signal) // stdio: signals the child's process group
	stop       context.CancelFunc   // remote: ends the transport's context
	stderr     *tailBuffer
	stderrDone chan struct{}   // closed when a stdio child's stderr ends
	init       json.RawMessage // the upstream's initialize result
	nextID     atomic.Int64
	dead       atomic.Bool

	mu       sync.Mutex
	inflight map[string]*inflight // by upstream request id
	progress map[string]*inflight // by upstream progress token
	srvReqs  map[string]*srvRequest
	sessions map[*session]bool // downstream sessions using a shared conn
	catalog  *catalog          // tools/list of this conn
}

// inflight is a downstream request forwarded on a conn.
type inflight struct {
	upstream   string
	sess       *session
	downID     json.RawMessage
	downToken  json.RawMessage // the client's progressToken
	upID       string
	upToken    string
	related    *responder // the POST stream of the request, if any
	cancel     context.CancelFunc
	cancelSent atomic.Bool
	// redact is the decision's (its redact obligations), for the
	// upstream's messages related to the request; nil when none.
	redact func(string) string
}

// srvRequest is an upstream→client request relayed to a downstream session.
type srvRequest struct {
	sess   *session
	downID string
}

func newConn(up *Upstream, t transport.Interface, dedicated *session) *conn {
	c := &conn{
		up: up, t: t, dedicated: dedicated,
		inflight: map[string]*inflight{},
		progress: map[string]*inflight{},
		srvReqs:  map[string]*srvRequest{},
		sessions: map[*session]bool{},
		catalog:  &catalog{},
	}
	t.SetNotificationHandler(c.onNotification)
	if bt, ok := t.(transport.BidirectionalInterface); ok {
		bt.SetRequestHandler(c.onRequest)
	}
	return c
}

// request sends one request and waits for its answer. A JSON-RPC error from
// the upstream is returned as rerr; err is a transport or protocol failure.
func (c *conn) request(ctx context.Context, id, method string, params json.RawMessage) (result json.RawMessage, rerr *rpcError, err error) {
	if c.dead.Load() {
		return nil, nil, newUpstreamError(ErrUpstreamUnavailable, nil, "upstream %q session is closed%s", c.up.cfg.Name, c.stderrTail())
	}
	req := transport.JSONRPCRequest{JSONRPC: "2.0", ID: mcpgo.NewRequestId(id), Method: method}
	if len(params) > 0 {
		req.Params = params
	}
	resp, err := c.t.SendRequest(ctx, req)
	if err != nil {
		return nil, nil, c.failure(ctx, err)
	}
	if resp == nil || (resp.Error == nil && resp.Result == nil) {
		return nil, nil, newUpstreamError(ErrUpstreamProtocol, nil, "upstream %q sent an empty response", c.up.cfg.Name)
	}
	if resp.Error != nil {
		return nil, &rpcError{Code: resp.Error.Code, Message: resp.Error.Message, Data: rawData(resp.Error.Data)}, nil
	}
	return resp.Result, nil, nil
}

func rawData(v any) json.RawMessage {
	if v == nil {
		return nil
	}
	b, _ := json.Marshal(v)
	return b
}

// failure classifies a transport error and marks the conn dead when the
// transport itself is gone.
func (c *conn) failure(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, ErrUpstreamTimeout) {
		return newUpstreamError(ErrUpstreamTimeout, nil, "upstream %q did not answer in time", c.up.cfg.Name)
	}
	if errors.Is(err, transport.ErrTransportClosed) || errors.Is(err, transport.ErrSessionTerminated) ||
		errors.Is(err, syscall.EPIPE) { // a stdio child that exited before the write
		c.markDead()
	}
	if c.dead.Load() { // a crash, even if it surfaced as our cancellation
		return newUpstreamError(ErrUpstreamUnavailable, nil, "upstream %q session ended%s", c.up.cfg.Name, c.stderrTail())
	}
	if ctx.Err() != nil {
		return fmt.Errorf("upstream %q request: %w", c.up.cfg.Name, context.Canceled)
	}
	return newUpstreamError(ErrUpstreamUnavailable, err, "upstream %q transport failed", c.up.cfg.Name)
}

// stderrTail quotes the end of a stdio child's stderr, waiting briefly for
// the pipe to drain after an exit.
func (c *conn) stderrTail() string {
	if c.stderr == nil {
		return ""
	}
	select {
	case <-c.stderrDone:
	case <-time.After(200 * time.Millisecond):
	}
	if tail := c.stderr.String(); tail != "" {
		return fmt.Sprintf(" (stderr tail: %q)", tail)
	}
	return ""
}

func (c *conn) notify(ctx context.Context, method string, params json.RawMessage) error {
	n := mcpgo.JSONRPCNotification{JSONRPC: "2.0", Notification: mcpgo.Notification{Method: method}}
	if len(params) > 0 {
		if err := json.Unmarshal(params, &n.Params); err != nil {
			return fmt.Errorf("notification params: %w", err)
		}
	}
	return c.t.SendNotification(ctx, n)
}

// newID is a fresh upstream request id, unique on this conn.
func (c *conn) newID() string {
	return "nomos-" + strconv.FormatInt(c.nextID.Add(1), 10)
}

func (c *conn) markDead() {
	if c.dead.Swap(true) {
		return
	}
	c.failInflight()
}

// failInflight cancels every forwarded request so its caller sees the
// crash instead of waiting for a timeout.
func (c *conn) failInflight() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.inflight {
		f.cancel()
	}
}

// close ends the session. A stdio child's whole process group gets
// SIGTERM, then SIGKILL once the transport has reaped the child.
func (c *conn) close() {
	c.markDead()
	if c.killGroup != nil {
		c.killGroup(syscall.SIGTERM)
	}
	_ = c.t.Close()
	if c.killGroup != nil {
		c.killGroup(syscall.SIGKILL)
	}
	if c.stop != nil {
		c.stop()
	}
}

// busy reports whether a downstream session uses the conn or a request
// is in flight on it.
func (c *conn) busy() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sessions) > 0 || len(c.inflight) > 0
}

func (c *conn) attach(s *session) {
	c.mu.Lock()
	c.sessions[s] = true
	c.mu.Unlock()
}

func (c *conn) detach(s *session) {
	c.mu.Lock()
	delete(c.sessions, s)
	c.mu.Unlock()
}

// track registers a forwarded request for routing of related messages.
func (c *conn) track(f *inflight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight[f.upID] = f
	if f.upToken != "" {
		c.progress[f.upToken] = f
	}
}

func (c *conn) untrack(f *inflight) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, f.upID)
	delete(c.progress, f.upToken)
}

// sessionsOf lists the downstream sessions a notification may reach.
func (c *conn) sessionsOf() []*session {
	if c.dedicated != nil {
		return []*session{c.dedicated}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*session, 0, len(c.sessions))
	for s := range c.sessions {
		out = append(out, s)
	}
	return out
}

// latestInflight picks the downstream request that an unattributed upstream
// message most likely belongs to: the newest request in flight. Over a
// shared stdio conn that is a best guess; see docs/mcp-gateway.md.
func (c *conn) latestInflight() *inflight {
	c.mu.Lock()
	defer c.mu.Unlock()
	var best *inflight
	var bestN int64 = -1
	for id, f := range c.inflight {
		n, _ := strconv.ParseInt(id[len("nomos-"):], 10, 64)
		if n > bestN {
			best, bestN = f, n
		}
	}
	return best
}

// redactorFor is what an upstream's notification or request for session s
// is redacted with: the gateway's (the app's rules) and the redact
// obligations of every call s has in flight on the conn, since a message
// on a shared conn is not attributed to one call. nil when there are none.
func (c *conn) redactorFor(s *session) func(string) string {
	var fns []func(string) string
	if g := s.gw.Load(); g != nil && g.redact != nil {
		fns = append(fns, g.redact)
	}
	c.mu.Lock()
	for _, f := range c.inflight {
		if f.sess == s && f.redact != nil {
			fns = append(fns, f.redact)
		}
	}
	c.mu.Unlock()
	if len(fns) == 0 {
		return nil
	}
	return func(x string) string {
		for _, fn := range fns {
			x = fn(x)
		}
		return x
	}
}

// onlyInflightSession is the single session with requests in flight or,
// when none has, the single session using the conn; nil when that is
// ambiguous.
func (c *conn) onlyInflightSession() *session {
	if c.dedicated != nil {
		return c.dedicated
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var only *session
	for _, f := range c.inflight {
		if only != nil && only != f.sess {
			return nil
		}
		only = f.sess
	}
	if only == nil && len(c.sessions) == 1 {
		for s := range c.sessions {
			only = s
		}
	}
	return only
}

func (f *inflight) up() string { return f.upstream }

func (c *conn) tokenTaken(token string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.progress[token] != nil
}

// subscribedElsewhere reports whether another downstream session of this
// shared conn holds a subscription to uri.
func (c *conn) subscribedElsewhere(s *session, uri, upstream string) bool {
	for _, other := range c.sessionsOf() {
		if other != s && other.subscribedTo(uri, upstream) {
			return true
		}
	}
	return false
}
