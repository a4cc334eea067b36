package mcp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-nomos/nomos/internal/ratelimit"
)

// Gateway is one governed MCP endpoint (a nomos_mcp route) in front of one
// or more upstreams. It serves the Streamable HTTP transport.
type Gateway struct {
	route    RouteConfig
	ups      []*Upstream // in route order
	byName   map[string]*Upstream
	path     *Path
	auth     Authenticator
	log      *slog.Logger
	now      func() time.Time
	sessions sessionStore
	// initLimit paces initialize per principal.
	initLimit *ratelimit.Limiter
	// successor adopted this gateway's sessions in a reload; requests the
	// old configuration still serves find them there.
	successor atomic.Pointer[Gateway]
	// builtins, when set, are listed first and answered in process.
	builtins Builtins
	// redact is applied to what upstreams send clients outside a decided
	// answer (notifications, relayed requests); nil keeps them.
	redact func(string) string
}

// GatewayOption configures a Gateway beyond its route.
type GatewayOption func(*Gateway)

// WithBuiltins makes the gateway offer b's tools ahead of the upstreams'.
// A route with built-in tools may have no upstream at all.
func WithBuiltins(b Builtins) GatewayOption {
	return func(g *Gateway) { g.builtins = b }
}

// WithRedactor redacts every string of the notifications and requests an
// upstream sends a client outside the answer to a decided request (log
// messages, progress, sampling prompts), with the app's rules; an answer
// to a decided request is redacted with the decision's.
func WithRedactor(redact func(string) string) GatewayOption {
	return func(g *Gateway) { g.redact = redact }
}

// NewGateway builds a gateway for route over started upstreams (keyed by
// name). It refuses unknown upstreams and exposed tool names that collide.
func NewGateway(route RouteConfig, ups map[string]*Upstream, gov Governor, auth Authenticator, log *slog.Logger, opts ...GatewayOption) (*Gateway, error) {
	if gov == nil || auth == nil {
		return nil, errors.New("mcp gateway: a governor and an authenticator are required")
	}
	if log == nil {
		log = slog.Default()
	}
	g := &Gateway{route: route.withDefaults(), byName: map[string]*Upstream{}, auth: auth,
		log: log, now: time.Now, sessions: newSessionStore()}
	g.path = NewPath(gov, g.route.Transport, log)
	for _, opt := range opts {
		opt(g)
	}
	if err := g.route.validate(); err != nil {
		return nil, fmt.Errorf("mcp gateway: %w", err)
	}
	limit, err := ratelimit.New(ratelimit.Config{Events: g.route.InitializePerMinute, Interval: time.Minute})
	if err != nil {
		return nil, fmt.Errorf("mcp gateway: %w", err)
	}
	g.initLimit = limit
	if err := g.bindUpstreams(ups); err != nil {
		return nil, fmt.Errorf("mcp gateway: %w", err)
	}
	if err := g.checkCollisions(); err != nil {
		return nil, fmt.Errorf("mcp gateway: %w", err)
	}
	return g, nil
}

func (g *Gateway) bindUpstreams(ups map[string]*Upstream) error {
	if len(g.route.Upstreams) == 0 && g.builtins == nil {
		return errors.New("a route needs at least one upstream, or built-in tools")
	}
	for _, name := range g.route.Upstreams {
		u, ok := ups[name]
		if !ok || u == nil {
			return fmt.Errorf("unknown upstream %q", name)
		}
		if g.byName[name] != nil {
			return fmt.Errorf("upstream %q listed twice", name)
		}
		g.ups = append(g.ups, u)
		g.byName[name] = u
	}
	for name := range g.route.Prefixes {
		if g.byName[name] == nil {
			return fmt.Errorf("prefix for unknown upstream %q", name)
		}
	}
	return nil
}

// checkCollisions refuses two upstream tools exposed under one name.
func (g *Gateway) checkCollisions() error {
	seen := map[string]string{}
	for _, u := range g.ups {
		for _, tool := range u.ToolNames() {
			exposed := g.route.prefixFor(u.cfg.Name) + tool
			if prev, ok := seen[exposed]; ok {
				return fmt.Errorf("tool name %q is exposed by both %q and %q; set distinct prefixes", exposed, prev, u.cfg.Name)
			}
			seen[exposed] = u.cfg.Name
		}
	}
	return nil
}

// Close ends every downstream session. Upstreams are not closed: they
// belong to the caller (and may be pooled across reloads).
func (g *Gateway) Close() error {
	var wg sync.WaitGroup
	for _, s := range g.sessions.all() {
		g.sessions.remove(s.id)
		wg.Go(s.closeWait)
	}
	wg.Wait()
	return nil
}

// AdoptSessions moves the live downstream sessions of old, the gateway a
// configuration reload replaces, to g so connected clients keep their
// MCP-Session-Id. A session moves only when every upstream it uses is the
// very same *Upstream in g (an unchanged, pooled upstream); the others stay
// with old and end when old is closed. It returns how many moved.
func (g *Gateway) AdoptSessions(old *Gateway) int {
	if old == nil || old == g {
		return 0
	}
	old.successor.Store(g)
	n := 0
	for _, s := range old.sessions.all() {
		if !s.usesOnly(g.byName) {
			continue
		}
		old.sessions.remove(s.id)
		s.gw.Store(g)
		g.sessions.add(s, 0) // a session already admitted stays
		n++
	}
	return n
}

// toolVisibleOnRoute applies the include and exclude globs.
func (g *Gateway) toolVisibleOnRoute(exposed string) bool {
	for _, glob := range g.route.Exclude {
		if ok, _ := path.Match(glob, exposed); ok {
			return false
		}
	}
	if len(g.route.Include) == 0 {
		return true
	}
	for _, glob := range g.route.Include {
		if ok, _ := path.Match(glob, exposed); ok {
			return true
		}
	}
	return false
}

// toolRef is an exposed tool resolved to its upstream.
type toolRef struct {
	exposed string
	up      *Upstream
	def     *toolDef
	// quarantined marks the called tool when its definition is not the
	// pinned one: it does not exist for the client, but the audit says why.
	quarantined bool
}

// toolView lists the tools this session may reach on the route (before
// policy visibility), first upstream winning a runtime name collision.
// Quarantined tools are left out, as if the upstream did not offer them.
func (g *Gateway) toolView(ctx context.Context, s *session) ([]toolRef, error) {
	var out []toolRef
	seen := map[string]bool{}
	for _, u := range g.ups {
		refs, err := g.upstreamTools(ctx, s, u, "")
		if err != nil && len(g.ups) == 1 {
			return nil, err
		}
		if err != nil { // one unavailable upstream does not hide the others
			g.log.Warn("mcp upstream left out of tools/list", "upstream_server", u.cfg.Name, "error", err)
			continue
		}
		for _, r := range refs {
			if seen[r.exposed] {
				g.log.Warn("mcp tool name collision after refresh; first upstream wins", "tool", r.exposed, "upstream_server", u.cfg.Name)
				continue
			}
			seen[r.exposed] = true
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].exposed < out[j].exposed })
	return out, nil
}

// upstreamTools lists u's tools this session may reach on the route whose
// definitions are pinned. A listing (call == "") reads the pins again, so
// an accept made elsewhere shows at the next tools/list; a call to the
// quarantined tool call reads them again at most once per pinRecheckEvery.
func (g *Gateway) upstreamTools(ctx context.Context, s *session, u *Upstream, call string) ([]toolRef, error) {
	c, err := u.connFor(ctx, s)
	if err != nil {
		return nil, err
	}
	_, cached := c.catalog.get()
	defs, err := u.tools(ctx, c)
	if err != nil {
		return nil, err
	}
	if call == "" && cached { // a fresh listing was observed by tools
		if err := u.observePins(ctx, defs); err != nil {
			return nil, newUpstreamError(ErrUpstreamUnavailable, err, "upstream %q: tool pins", u.cfg.Name)
		}
	}
	prefix := g.route.prefixFor(u.cfg.Name)
	var out []toolRef
	for _, d := range defs {
		exposed := prefix + d.name
		if !g.toolVisibleOnRoute(exposed) {
			continue
		}
		pinned := u.pinned(ctx, d, defs, exposed == call)
		if !pinned && exposed != call {
			continue
		}
		out = append(out, toolRef{exposed: exposed, up: u, def: d, quarantined: !pinned})
	}
	return out, nil
}

// resolveTool finds an exposed tool name. A quarantined tool is not found
// (ok is false), but its ref comes back for the audit.
// An unavailable upstream that could own the name is reported only when no
// other upstream has the tool.
func (g *Gateway) resolveTool(ctx context.Context, s *session, exposed string) (toolRef, bool, error) {
	var firstErr error
	var quarantined toolRef
	for _, u := range g.ups {
		if !strings.HasPrefix(exposed, g.route.prefixFor(u.cfg.Name)) {
			continue
		}
		refs, err := g.upstreamTools(ctx, s, u, exposed)
		if err != nil {
			firstErr = cmp.Or(firstErr, err)
			continue
		}
		for _, r := range refs {
			switch {
			case r.exposed != exposed:
			case !r.quarantined:
				return r, true, nil
			case quarantined.def == nil:
				quarantined = r
			}
		}
	}
	if quarantined.def != nil {
		return quarantined, false, nil
	}
	return toolRef{}, false, firstErr
}

// resolveNamed maps an exposed prompt name to its upstream and upstream
// name using the route prefixes (longest prefix first).
func (g *Gateway) resolveNamed(exposed string) (*Upstream, string, bool) {
	var best *Upstream
	bestLen := -1
	for _, u := range g.ups {
		p := g.route.prefixFor(u.cfg.Name)
		if strings.HasPrefix(exposed, p) && len(p) > bestLen {
			best, bestLen = u, len(p)
		}
	}
	if best == nil {
		return nil, "", false
	}
	return best, exposed[bestLen:], true
}
