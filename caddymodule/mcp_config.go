package caddymodule

import (
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-nomos/nomos/internal/pins"
	"github.com/caddy-nomos/nomos/mcp"
)

// UpstreamConfig declares one upstream MCP server of the nomos app. A
// route's nomos_mcp handler exposes it by name. Values may be placeholders
// such as {env.TOKEN}, resolved when the config loads. This struct is the
// JSON schema and the reference; mcp.UpstreamConfig is the engine's plain
// copy of it.
type UpstreamConfig struct {
	// Transport is stdio, streamable_http or sse. Default: stdio with a
	// command, streamable_http with a url.
	Transport string `json:"transport,omitempty"`
	// Command starts a stdio upstream. A command that is a single
	// placeholder is split on spaces after it is resolved. Default: none
	// (exactly one of command or url is required).
	Command string `json:"command,omitempty"`
	// Args follow Command. Default: none.
	Args []string `json:"args,omitempty"`
	// Env sets fixed variables of the child. Default: none.
	Env map[string]string `json:"env,omitempty"`
	// EnvAllowlist names variables copied from Nomos' environment; the
	// child otherwise starts from an empty environment. Default: none.
	EnvAllowlist []string `json:"env_allowlist,omitempty"`
	// Workdir is the child's working directory. Default: Nomos'.
	Workdir string `json:"workdir,omitempty"`
	// URL is the endpoint of a remote upstream. Default: none (exactly
	// one of command or url is required).
	URL string `json:"url,omitempty"`
	// AllowedHosts limits the hosts a remote upstream may be reached at.
	// Default: the host of URL.
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
	// Headers are sent to a remote upstream; the client's own credentials
	// never are. Default: none.
	Headers map[string]string `json:"headers,omitempty"`
	// TrustedCA is a PEM file of CA certificates trusted, besides the
	// system's, for a remote upstream (the same option as the executor's).
	// Default: the system trust store only.
	TrustedCA string `json:"trusted_ca,omitempty"`
	// ClientCert is the PEM certificate of mTLS to a remote upstream;
	// ClientKey goes with it. Default: none.
	ClientCert string `json:"client_cert,omitempty"`
	// ClientKey is the PEM key of ClientCert. Default: none.
	ClientKey string `json:"client_key,omitempty"`
	// AllowMissingToolSchemas lets tools without an inputSchema be called.
	// Default: false.
	AllowMissingToolSchemas bool `json:"allow_missing_tool_schemas,omitempty"`
	// Breaker is this upstream's circuit breaker. Default: on, with the
	// defaults of BreakerConfig.
	Breaker *BreakerConfig `json:"breaker,omitempty"`
	// Timeouts bound each stage of an exchange. Default: the defaults of
	// TimeoutsConfig.
	Timeouts *TimeoutsConfig `json:"timeouts,omitempty"`
	// Pin is what a tool definition that differs from its reviewed pin
	// does (docs/mcp-gateway.md#tool-pinning): off (nothing is recorded),
	// warn (the change is audited and reported; the tool stays), or
	// enforce (the changed or new tool is quarantined until an operator
	// accepts it). The first listing is trusted as it is. Default: enforce.
	Pin string `json:"pin,omitempty"`
}

// BreakerConfig is an upstream circuit breaker. Only transport, protocol
// and timeout failures count; tool errors and cancellations do not.
type BreakerConfig struct {
	// Disabled turns the breaker off (Caddyfile: breaker disabled).
	// Default: false (on).
	Disabled bool `json:"disabled,omitempty"`
	// FailureThreshold failures within FailureWindow open it. Default: 5.
	FailureThreshold int `json:"failure_threshold,omitempty"`
	// FailureWindow is the window of counted failures. Default: 60s.
	FailureWindow caddy.Duration `json:"failure_window,omitempty"`
	// OpenTimeout is how long it stays open before one probe. Default: 30s.
	OpenTimeout caddy.Duration `json:"open_timeout,omitempty"`
}

// TimeoutsConfig bounds the stages of an upstream exchange.
type TimeoutsConfig struct {
	// Initialize bounds starting a session. Default: 10s.
	Initialize caddy.Duration `json:"initialize,omitempty"`
	// List bounds the list calls. Default: 10s.
	List caddy.Duration `json:"list,omitempty"`
	// Call bounds tools/call and every other request. Default: 60s.
	Call caddy.Duration `json:"call,omitempty"`
}

// toMCP resolves placeholders and converts to the engine's options.
func (c *UpstreamConfig) toMCP(name string) (mcp.UpstreamConfig, error) {
	out := mcp.UpstreamConfig{
		Name: name, Transport: c.Transport, Command: resolve(c.Command), Args: resolveAll(c.Args),
		EnvAllowlist: c.EnvAllowlist, Workdir: c.Workdir, URL: resolve(c.URL), AllowedHosts: c.AllowedHosts,
		TrustedCA: c.TrustedCA, ClientCert: c.ClientCert, ClientKey: c.ClientKey,
		AllowMissingToolSchemas: c.AllowMissingToolSchemas,
		Env:                     resolveMap(c.Env), Headers: resolveMap(c.Headers),
		Pin: pins.Mode(c.Pin),
	}
	if strings.HasPrefix(c.Command, "{") && strings.Contains(out.Command, " ") {
		fields := strings.Fields(out.Command)
		out.Command, out.Args = fields[0], append(fields[1:], out.Args...)
	}
	if c.Command != "" && out.Command == "" || c.URL != "" && out.URL == "" {
		return out, fmt.Errorf("upstream %q: command or url resolved to nothing (unset environment variable?)", name)
	}
	if b := c.Breaker; b != nil {
		out.Breaker = mcp.BreakerConfig{Disabled: b.Disabled, FailureThreshold: b.FailureThreshold,
			FailureWindow: time.Duration(b.FailureWindow), OpenTimeout: time.Duration(b.OpenTimeout)}
	}
	if t := c.Timeouts; t != nil {
		out.Timeouts = mcp.Timeouts{Initialize: time.Duration(t.Initialize), List: time.Duration(t.List), Call: time.Duration(t.Call)}
	}
	return out, nil
}

func resolveAll(vals []string) []string {
	if vals == nil {
		return nil
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = resolve(v)
	}
	return out
}

func resolveMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = resolve(v)
	}
	return out
}
