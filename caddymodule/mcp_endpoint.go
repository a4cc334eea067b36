package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-nomos/nomos/mcp"
)

// MCPEndpointConfig holds the settings of a Streamable HTTP MCP endpoint
// that every MCP door served over HTTP shares, with one spelling and one
// set of defaults: nomos_mcp and the MCP mode of nomos_guard.
type MCPEndpointConfig struct {
	// AllowedOrigins lists the Origin values browsers may send; "*" allows
	// any. Default: loopback origins only.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
	// AllowedHosts lists globs of accepted Host headers. Default: loopback
	// names on a loopback listener, any otherwise.
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
	// SessionTTL expires client sessions (for nomos_guard, the binding of
	// an Mcp-Session-Id) idle for longer; the client then gets 404 and
	// initializes again. Default: 30m.
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`
	// MaxSessionsPerPrincipal bounds the live client sessions of one
	// principal; initialize beyond it is refused with 429 session_limit.
	// Default: 256.
	MaxSessionsPerPrincipal int `json:"max_sessions_per_principal,omitempty"`
	// InitializePerMinute paces initialize per principal; beyond it
	// initialize is refused with 429 rate_limited. Default: 600.
	InitializePerMinute int `json:"initialize_per_minute,omitempty"`
}

// withDefaults fills the defaults of the mcp package's RouteConfig.
func (c MCPEndpointConfig) withDefaults() MCPEndpointConfig {
	if c.SessionTTL <= 0 {
		c.SessionTTL = caddy.Duration(mcp.DefaultSessionTTL)
	}
	if c.MaxSessionsPerPrincipal <= 0 {
		c.MaxSessionsPerPrincipal = mcp.DefaultMaxSessionsPerPrincipal
	}
	if c.InitializePerMinute <= 0 {
		c.InitializePerMinute = mcp.DefaultInitializePerMinute
	}
	return c
}

// unmarshalOption parses one endpoint setting; known is false for a name
// that is not one.
func (c *MCPEndpointConfig) unmarshalOption(d *caddyfile.Dispenser) (known bool, err error) {
	switch d.Val() {
	case "allowed_origins":
		return true, appendArgs(d, &c.AllowedOrigins)
	case "allowed_hosts":
		return true, appendArgs(d, &c.AllowedHosts)
	case "session_ttl":
		return true, setDuration(d, &c.SessionTTL)
	case "max_sessions_per_principal":
		return true, setInt(d, &c.MaxSessionsPerPrincipal)
	case "initialize_per_minute":
		return true, setInt(d, &c.InitializePerMinute)
	}
	return false, nil
}
