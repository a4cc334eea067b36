package caddymodule

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/caddy-nomos/nomos/mcp"
)

// provisionUpstreams starts every declared upstream MCP server. Upstreams
// are pooled by their full configuration, so a reload that leaves one
// unchanged keeps its session and child process. Every upstream is
// validated before the pin store opens, and the store opens before any
// upstream starts, since starting pins the first listing.
func (a *App) provisionUpstreams() error {
	a.upstreams = map[string]*mcp.Upstream{}
	names := slices.Sorted(maps.Keys(a.Upstreams))
	candidates := make([]*mcp.Upstream, len(names))
	for i, name := range names {
		u, err := a.newUpstream(name, a.Upstreams[name])
		if err != nil {
			return fmt.Errorf("nomos: upstream %q: %w", name, err)
		}
		candidates[i] = u
	}
	if err := a.provisionPins(); err != nil {
		return err
	}
	for i, name := range names {
		u, err := a.loadUpstream(candidates[i])
		if err != nil {
			return fmt.Errorf("nomos: upstream %q: %w", name, err)
		}
		a.upstreams[name] = u
	}
	return nil
}

func (a *App) newUpstream(name string, c *UpstreamConfig) (*mcp.Upstream, error) {
	if c == nil {
		return nil, fmt.Errorf("empty configuration")
	}
	cfg, err := c.toMCP(name)
	if err != nil {
		return nil, err
	}
	return mcp.NewUpstream(cfg, a.slog.With("upstream_server", name))
}

// loadUpstream returns the pooled upstream of candidate's configuration,
// starting candidate when there is none.
func (a *App) loadUpstream(candidate *mcp.Upstream) (*mcp.Upstream, error) {
	key := "upstream:" + candidate.Key()
	a.track(key)
	if err := a.bindPins(candidate); err != nil { // before Start, which pins the first listing
		return nil, err
	}
	u, err := loadPooled(key, func() (*mcp.Upstream, func() error, error) {
		if err := candidate.Start(context.Background()); err != nil {
			_ = candidate.Close()
			return nil, nil, err
		}
		return candidate, candidate.Close, nil
	})
	if err != nil || u == candidate {
		return u, err
	}
	return u, a.bindPins(u) // a running upstream observes its listing against this config's store
}

// UpstreamBreakerStates reports the circuit breaker state of every upstream
// (disabled, closed, half-open or open), by name, for metrics and the UI.
func (a *App) UpstreamBreakerStates() map[string]string {
	out := make(map[string]string, len(a.upstreams))
	for name, u := range a.upstreams {
		out[name] = u.BreakerState()
	}
	return out
}
