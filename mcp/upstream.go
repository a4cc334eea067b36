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

	mu        sync.Mutex
	shared    *conn // stdio child or remote control session
	started   time.Time
	restartAt time.Time
	backoff   time.Duration
	closed    bool
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
	u := &Upstream{cfg: cfg, key: cfg.key(), log: log, now: time.Now, backoff: minRestartBackoff}
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

// Start opens the upstream session (spawning a stdio child) and enumerates
// its tools. A failure fails the configuration load.
func (u *Upstream) Start(ctx context.Context) error {
	u.mu.Lock()
	running := u.shared != nil
	u.mu.Unlock()
	if running {
		return nil
	}
	c, rerr, err := u.dial(ctx, nil, nil)
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
	u.shared, u.started = c, u.now()
	u.mu.Unlock()
	return nil
}

// Close ends every session of the upstream and kills a stdio child's
// process group.
func (u *Upstream) Close() error {
	u.mu.Lock()
	u.closed = true
	c := u.shared
	u.shared = nil
	u.mu.Unlock()
	u.cancel()
	if c != nil {
		c.close()
	}
	if u.remote != nil {
		u.remote.hc.CloseIdleConnections() // no keep-alive goroutines outlive a reload
	}
	return nil
}

// controlInit is the initialize result of the gateway's own session.
func (u *Upstream) controlInit() json.RawMessage {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.shared == nil {
		return nil
	}
	return u.shared.init
}

// ToolNames lists the upstream tool names from the last enumeration.
func (u *Upstream) ToolNames() []string {
	u.mu.Lock()
	c := u.shared
	u.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.catalog.names()
}

// sharedConn returns the shared session, restarting a crashed one when its
// backoff has elapsed.
func (u *Upstream) sharedConn(ctx context.Context) (*conn, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, newUpstreamError(ErrUpstreamUnavailable, nil, "upstream %q is closed", u.cfg.Name)
	}
	if u.shared != nil && !u.shared.dead.Load() {
		return u.shared, nil
	}
	return u.restartLocked(ctx)
}

func (u *Upstream) restartLocked(ctx context.Context) (*conn, error) {
	now := u.now()
	if now.Before(u.restartAt) {
		return nil, newUpstreamError(ErrUpstreamUnavailable, nil, "upstream %q is restarting", u.cfg.Name)
	}
	if old := u.shared; old != nil {
		go old.close() // reap the dead child
		if now.Sub(u.started) > stableAfter {
			u.backoff = minRestartBackoff
		}
	}
	u.shared = nil
	c, rerr, err := u.dial(ctx, nil, nil)
	if err == nil && rerr != nil {
		err = newUpstreamError(ErrUpstreamProtocol, rerr, "upstream %q refused initialize", u.cfg.Name)
	}
	if err != nil {
		u.restartAt = now.Add(u.backoff)
		u.backoff = min(u.backoff*2, maxRestartBackoff)
		return nil, err
	}
	u.log.Info("mcp upstream session restarted")
	u.shared, u.started, u.restartAt = c, now, now.Add(u.backoff)
	return c, nil
}

// dial opens one upstream session. dedicated is the downstream session it
// serves alone (nil for the shared one); initParams are the downstream's
// initialize params to forward (nil: the gateway's own). A JSON-RPC error
// answering initialize comes back as rerr.
func (u *Upstream) dial(ctx context.Context, dedicated *session, initParams json.RawMessage) (*conn, *rpcError, error) {
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
		rerr, e = u.initialize(ctx, c, initParams)
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

func (u *Upstream) initialize(ctx context.Context, c *conn, params json.RawMessage) (*rpcError, error) {
	own := params == nil
	if own {
		params = gatewayInitParams()
	}
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

func gatewayInitParams() json.RawMessage {
	p := map[string]any{
		"protocolVersion": gatewayProtocolVersion,
		"capabilities": map[string]any{
			"roots":       map[string]any{"listChanged": true},
			"sampling":    map[string]any{},
			"elicitation": map[string]any{"form": map[string]any{}, "url": map[string]any{}},
		},
		"clientInfo": map[string]any{"name": "nomos-gateway", "version": "1"},
	}
	b, _ := json.Marshal(p)
	return b
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
		c, err := u.sharedConn(ctx)
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
	c, rerr, err := u.dial(ctx, s, params)
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
