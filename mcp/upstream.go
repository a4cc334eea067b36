package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-nomos/nomos/policy/action"
	"github.com/mark3labs/mcp-go/client/transport"
)

// Restart backoff of a crashed stdio child.
const (
	minRestartBackoff = 100 * time.Millisecond
	maxRestartBackoff = 5 * time.Second
	stableAfter       = 10 * time.Second
)

// gatewayProtocolVersion is what the gateway asks for when it opens an
// upstream session of its own (stdio children and the control session).
const gatewayProtocolVersion = "2025-11-25"

// Upstream is one configured upstream MCP server: its session(s), child
// process, breaker and tool catalog. It is safe for concurrent use and may
// be shared by several gateways (routes) and survive a config reload.
type Upstream struct {
	cfg      UpstreamConfig
	key      string
	log      *slog.Logger
	breaker  *breaker
	remote   *remoteClient
	envShape string // digest of the stdio child's variable names
	now      func() time.Time
	obs      observer

	ctx    context.Context // lives until Close
	cancel context.CancelFunc
	pins   pinState

	mu       sync.Mutex
	children map[string]*child // by clientCapabilities.key; "{}" is the control session
	closed   bool
}

// child is one session the gateway opens itself and shares: the control
// session (remote and stdio upstreams, no client capabilities) and, for a
// stdio upstream, one child process per set of client capabilities, with
// its restart back-off.
type child struct {
	caps clientCapabilities
	conn atomic.Pointer[conn]
	// dialMu serializes (re)starts of this child, outside Upstream.mu, so
	// a spawning child never holds up the sessions of the others; it
	// guards started, restartAt and backoff.
	dialMu    sync.Mutex
	started   time.Time
	restartAt time.Time
	backoff   time.Duration
	lastUsed  time.Time // guarded by Upstream.mu
}

// NewUpstream validates cfg, applies defaults and prepares an upstream. It
// starts nothing; call Start.
func NewUpstream(cfg UpstreamConfig, log *slog.Logger) (*Upstream, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("mcp upstream: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("upstream_server", cfg.Name)
	u := &Upstream{cfg: cfg, key: cfg.key(), log: log, now: time.Now, children: map[string]*child{}}
	u.breaker = newBreaker(cfg.Name, cfg.Breaker, log)
	if cfg.Transport != TransportStdio {
		rc, err := newRemoteClient(cfg)
		if err != nil {
			return nil, fmt.Errorf("mcp upstream %q: %w", cfg.Name, err)
		}
		u.remote = rc
	}
	u.warnConfig()
	u.envShape = u.computeEnvShape()
	u.ctx, u.cancel = context.WithCancel(context.Background())
	return u, nil
}

// envShapeHash digests the names (never the values) of a stdio child's
// environment, for audit: a changed shape shows in executor metadata.
func (u *Upstream) envShapeHash() string { return u.envShape }

func (u *Upstream) computeEnvShape() string {
	if u.cfg.Transport != TransportStdio {
		return ""
	}
	env := childEnv(u.cfg, os.LookupEnv)
	names := make([]string, len(env))
	for i, kv := range env {
		names[i], _, _ = strings.Cut(kv, "=")
	}
	return action.SHA256Hex([]byte(strings.Join(names, "\n")))
}

func (u *Upstream) warnConfig() {
	if u.cfg.Transport != TransportStdio {
		return
	}
	if !filepath.IsAbs(u.cfg.Command) {
		u.log.Warn("mcp upstream uses a non-absolute command; it is resolved with the gateway's PATH", "command", u.cfg.Command)
	}
	if len(u.cfg.EnvAllowlist) == 0 && len(u.cfg.Env) == 0 {
		u.log.Warn("mcp upstream starts with an empty environment; set env_allowlist or env if it needs variables")
	}
}

// Key is the content hash of the upstream's configuration: an unchanged
// upstream keeps its Key across reloads, so a pool can keep it running.
func (u *Upstream) Key() string { return u.key }

// Name is the configured upstream name.
func (u *Upstream) Name() string { return u.cfg.Name }

// BreakerState is the upstream's circuit breaker state: disabled, closed,
// half-open or open. Metrics and the UI read it through the nomos app.
func (u *Upstream) BreakerState() string { return u.breaker.state() }

// Start opens the upstream's control session (spawning a stdio child) and
// enumerates its tools. A failure fails the configuration load.
func (u *Upstream) Start(ctx context.Context) error {
	if u.control() != nil {
		return nil
	}
	c, rerr, err := u.dial(ctx, nil, gatewayInitParams(noCapabilities), true)
	if err == nil && rerr != nil {
		err = fmt.Errorf("initialize: %w", rerr)
	}
	if err != nil {
		return fmt.Errorf("mcp upstream %q: start: %w", u.cfg.Name, err)
	}
	if _, err := u.tools(ctx, c); err != nil {
		c.close()
		return fmt.Errorf("mcp upstream %q: enumerate tools: %w", u.cfg.Name, err)
	}
	u.mu.Lock()
	now := u.now()
	ch := &child{caps: noCapabilities, started: now, lastUsed: now, backoff: minRestartBackoff}
	ch.conn.Store(c)
	u.children[noCapabilities.key] = ch
	u.mu.Unlock()
	return nil
}

// Close ends every session of the upstream and kills the process groups
// of its stdio children.
func (u *Upstream) Close() error {
	u.mu.Lock()
	u.closed = true
	children := u.children
	u.children = map[string]*child{}
	u.mu.Unlock()
	u.cancel()
	for _, ch := range children {
		if c := ch.conn.Swap(nil); c != nil {
			c.close()
		}
	}
	if u.remote != nil {
		u.remote.hc.CloseIdleConnections() // no keep-alive goroutines outlive a reload
	}
	return nil
}

// control is the gateway's own session, or nil before Start.
func (u *Upstream) control() *conn {
	u.mu.Lock()
	defer u.mu.Unlock()
	if ch := u.children[noCapabilities.key]; ch != nil {
		return ch.conn.Load()
	}
	return nil
}

// controlInit is the initialize result of the gateway's own session.
func (u *Upstream) controlInit() json.RawMessage {
	if c := u.control(); c != nil {
		return c.init
	}
	return nil
}

// ToolNames lists the upstream tool names from the control session's last
// enumeration (what the upstream offers a client that declares nothing).
func (u *Upstream) ToolNames() []string {
	if c := u.control(); c != nil {
		return c.catalog.names()
	}
	return nil
}

// sharedConn returns the shared stdio child of the clients that declared
// cc, starting it (or restarting a crashed one once its back-off has
// elapsed) when needed. When every child serves another capability set
// still in use, it is the child of the largest set within cc (at least
// the control child's, which declares nothing), and the session is
// narrowed to that set: a client is served with less, never refused, so
// sessions declaring made-up sets cannot lock others out.
func (u *Upstream) sharedConn(ctx context.Context, s *session) (*conn, error) {
	cc := s.capabilities()
	ch, err := u.childFor(cc)
	if err != nil {
		return nil, err
	}
	if ch.caps.key != cc.key {
		u.log.Warn("mcp upstream serves its maximum of capability sets; the session is served with fewer capabilities",
			"downstream_session_id", s.id, "client_capabilities", cc.key, "served_capabilities", ch.caps.key)
		s.narrowCapabilities(ch.caps)
	}
	if c := ch.conn.Load(); c != nil && !c.dead.Load() {
		return c, nil
	}
	ch.dialMu.Lock()
	defer ch.dialMu.Unlock()
	if c := ch.conn.Load(); c != nil && !c.dead.Load() {
		return c, nil // another session started it meanwhile
	}
	c, err := u.restart(ctx, ch)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	stale := u.closed || u.children[ch.caps.key] != ch
	u.mu.Unlock()
	if stale { // closed or evicted while it started
		ch.conn.CompareAndSwap(c, nil)
		c.close()
		return nil, newUpstreamError(ErrUpstreamUnavailable, nil, "upstream %q is closed", u.cfg.Name)
	}
	return c, nil
}

// childFor finds or makes the child of the clients that declared cc.
func (u *Upstream) childFor(cc clientCapabilities) (*child, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, newUpstreamError(ErrUpstreamUnavailable, nil, "upstream %q is closed", u.cfg.Name)
	}
	ch := u.children[cc.key]
	if ch == nil {
		ch = u.newChildLocked(cc)
	}
	if ch == nil {
		return nil, newUpstreamError(ErrUpstreamUnavailable, nil, "upstream %q has no child for capability set %s", u.cfg.Name, cc.key)
	}
	ch.lastUsed = u.now()
	return ch, nil
}

// newChildLocked makes room for one more capability set: beyond
// maxStdioChildren it evicts the least recently used child no session
// uses; when every child is in use it returns the child of the largest
// set within cc instead.
func (u *Upstream) newChildLocked(cc clientCapabilities) *child {
	if len(u.children) >= maxStdioChildren {
		victim := u.idleChildLocked()
		if victim == nil {
			return u.largestWithinLocked(cc)
		}
		delete(u.children, victim.caps.key)
		if c := victim.conn.Swap(nil); c != nil {
			go c.close()
		}
	}
	ch := &child{caps: cc, backoff: minRestartBackoff}
	u.children[cc.key] = ch
	return ch
}

// largestWithinLocked is the child declaring the most capabilities, each
// exactly as cc declares it (ties: the smaller key).
func (u *Upstream) largestWithinLocked(cc clientCapabilities) *child {
	var best *child
	for _, ch := range u.children {
		if !ch.caps.within(cc) {
			continue
		}
		if best == nil || len(ch.caps.caps) > len(best.caps.caps) ||
			(len(ch.caps.caps) == len(best.caps.caps) && ch.caps.key < best.caps.key) {
			best = ch
		}
	}
	return best
}

func (u *Upstream) idleChildLocked() *child {
	var victim *child
	for key, ch := range u.children {
		if c := ch.conn.Load(); key == noCapabilities.key || (c != nil && c.busy()) {
			continue
		}
		if victim == nil || ch.lastUsed.Before(victim.lastUsed) {
			victim = ch
		}
	}
	return victim
}

// restart starts ch's child, or a crashed one again once its back-off
// has elapsed. The caller holds ch.dialMu.
func (u *Upstream) restart(ctx context.Context, ch *child) (*conn, error) {
	now := u.now()
	if now.Before(ch.restartAt) {
		return nil, newUpstreamError(ErrUpstreamUnavailable, nil, "upstream %q is restarting", u.cfg.Name)
	}
	if old := ch.conn.Swap(nil); old != nil {
		go old.close() // reap the dead child
		if now.Sub(ch.started) > stableAfter {
			ch.backoff = minRestartBackoff
		}
	}
	c, rerr, err := u.dial(ctx, nil, gatewayInitParams(ch.caps), true)
	if err == nil && rerr != nil {
		err = newUpstreamError(ErrUpstreamProtocol, rerr, "upstream %q refused initialize", u.cfg.Name)
	}
	if err != nil {
		ch.restartAt = now.Add(ch.backoff)
		ch.backoff = min(ch.backoff*2, maxRestartBackoff)
		return nil, err
	}
	if ch.started.IsZero() {
		u.log.Info("mcp upstream child started for a client capability set", "client_capabilities", ch.caps.key)
	} else {
		u.log.Info("mcp upstream session restarted")
	}
	ch.started, ch.restartAt = now, now.Add(ch.backoff)
	ch.conn.Store(c)
	return c, nil
}

// dial opens one upstream session. dedicated is the downstream session it
// serves alone (nil for a shared one); params are the initialize params to
// send; own says the gateway opened it for itself, so it also sends
// notifications/initialized and asks for every log level. A JSON-RPC
// error answering initialize comes back as rerr.
func (u *Upstream) dial(ctx context.Context, dedicated *session, params json.RawMessage, own bool) (*conn, *rpcError, error) {
	c, err := u.open(dedicated)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := stageContext(ctx, u.cfg.Timeouts.Initialize)
	defer cancel()
	var rerr *rpcError
	start := u.now()
	err = u.breaker.do(func() error {
		var e error
		rerr, e = u.initialize(ctx, c, params, own)
		return e
	})
	u.observe("initialize", start, rerr, err)
	if err != nil || rerr != nil {
		c.close()
		return nil, rerr, err
	}
	return c, nil, nil
}

// open creates and starts the transport of a new session.
func (u *Upstream) open(dedicated *session) (*conn, error) {
	if u.cfg.Transport == TransportStdio {
		return u.openStdio()
	}
	return u.openRemote(dedicated)
}

func (u *Upstream) initialize(ctx context.Context, c *conn, params json.RawMessage, own bool) (*rpcError, error) {
	res, rerr, err := c.request(ctx, c.newID(), "initialize", params)
	if err != nil || rerr != nil {
		return rerr, err
	}
	var ir struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if json.Unmarshal(res, &ir) != nil || ir.ProtocolVersion == "" {
		return nil, newUpstreamError(ErrUpstreamProtocol, nil, "upstream %q: initialize result has no protocolVersion", u.cfg.Name)
	}
	if hc, ok := c.t.(transport.HTTPConnection); ok {
		hc.SetProtocolVersion(ir.ProtocolVersion)
	}
	c.init = res
	if !own {
		return nil, nil
	}
	if err := c.notify(ctx, "notifications/initialized", nil); err != nil {
		return nil, err
	}
	return nil, u.enableLogging(ctx, c)
}

// enableLogging asks a shared session for every log level: each downstream
// session filters by the level it set itself.
func (u *Upstream) enableLogging(ctx context.Context, c *conn) error {
	var r struct {
		Capabilities map[string]json.RawMessage `json:"capabilities"`
	}
	if json.Unmarshal(c.init, &r) != nil || r.Capabilities["logging"] == nil {
		return nil
	}
	_, rerr, err := c.request(ctx, c.newID(), "logging/setLevel", json.RawMessage(`{"level":"debug"}`))
	if rerr != nil {
		u.log.Debug("mcp upstream refused logging/setLevel", "error", rerr)
	}
	return err
}

// stageContext bounds one stage; its expiry is reported as
// ErrUpstreamTimeout, distinct from a downstream cancellation.
func stageContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, d, ErrUpstreamTimeout)
}

// send forwards one request on c under the breaker and the stage timeout.
func (u *Upstream) send(ctx context.Context, c *conn, id, method string, params json.RawMessage, timeout time.Duration) (json.RawMessage, *rpcError, error) {
	ctx, cancel := stageContext(ctx, timeout)
	defer cancel()
	var res json.RawMessage
	var rerr *rpcError
	start := u.now()
	err := u.breaker.do(func() error {
		var e error
		res, rerr, e = c.request(ctx, id, method, params)
		return e
	})
	u.observe(method, start, rerr, err)
	return res, rerr, err
}

// timeoutFor picks the stage timeout of a method.
func (u *Upstream) timeoutFor(method string) time.Duration {
	switch method {
	case "tools/list", "resources/list", "resources/templates/list", "prompts/list":
		return u.cfg.Timeouts.List
	case "initialize":
		return u.cfg.Timeouts.Initialize
	}
	return u.cfg.Timeouts.Call
}

func (u *Upstream) recoverPanic(where string) {
	if r := recover(); r != nil {
		u.log.Error("mcp upstream handler panicked", "where", where, "panic", fmt.Sprint(r))
	}
}

// connFor returns the conn a downstream session uses for this upstream:
// the shared one (stdio) or its dedicated one (remote).
func (u *Upstream) connFor(ctx context.Context, s *session) (*conn, error) {
	if u.cfg.Transport == TransportStdio {
		c, err := u.sharedConn(ctx, s)
		if err == nil && s.link(u.cfg.Name) != c {
			s.setLink(u.cfg.Name, c)
		}
		return c, err
	}
	if c := s.link(u.cfg.Name); c != nil && !c.dead.Load() {
		return c, nil
	}
	return u.redial(ctx, s)
}

// redial opens a dedicated session that is missing (the upstream was down
// at initialize) or ended, replaying the client's initialize. Only routes
// with several upstreams get here: with one, an ended upstream session ends
// the downstream session (404) so the client itself starts over.
func (u *Upstream) redial(ctx context.Context, s *session) (*conn, error) {
	params := s.initParamsCopy()
	if params == nil {
		return nil, newUpstreamError(ErrUpstreamUnavailable, nil, "upstream %q session ended; reinitialize", u.cfg.Name)
	}
	c, rerr, err := u.dial(ctx, s, params, false)
	if err == nil && rerr != nil {
		err = newUpstreamError(ErrUpstreamProtocol, rerr, "upstream %q refused initialize", u.cfg.Name)
	}
	if err != nil {
		return nil, err
	}
	if err := c.notify(ctx, "notifications/initialized", nil); err != nil {
		c.close()
		return nil, newUpstreamError(ErrUpstreamUnavailable, err, "upstream %q: initialized", u.cfg.Name)
	}
	if old := s.link(u.cfg.Name); old != nil && old.dedicated == s {
		go old.close()
	}
	s.setLink(u.cfg.Name, c)
	return c, nil
}
