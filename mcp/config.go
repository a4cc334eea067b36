package mcp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Upstream transports.
const (
	TransportStdio          = "stdio"
	TransportStreamableHTTP = "streamable_http"
	TransportSSE            = "sse"
)

// Defaults applied by UpstreamConfig.withDefaults.
const (
	DefaultFailureThreshold  = 5
	DefaultFailureWindow     = 60 * time.Second
	DefaultOpenTimeout       = 30 * time.Second
	DefaultInitializeTimeout = 10 * time.Second
	DefaultListTimeout       = 10 * time.Second
	DefaultCallTimeout       = 60 * time.Second
)

// UpstreamConfig declares one upstream MCP server.
type UpstreamConfig struct {
	// Name identifies the upstream in routes, resources (mcp://<name>/...)
	// and audit. Required; letters, digits, '-', '_' and '.'.
	Name string `json:"name"`
	// Transport is stdio, streamable_http or sse. Default: stdio when
	// Command is set, streamable_http when URL is set.
	Transport string `json:"transport,omitempty"`
	// Command and Args start a stdio upstream.
	Command string   `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	// Env holds fixed environment values of the child; they win over
	// EnvAllowlist. Default: none.
	Env map[string]string `json:"env,omitempty"`
	// EnvAllowlist names parent environment variables copied into the
	// child's otherwise empty environment. Default: none.
	EnvAllowlist []string `json:"env_allowlist,omitempty"`
	// Workdir is the child's working directory; it must exist. Default:
	// the gateway's.
	Workdir string `json:"workdir,omitempty"`
	// URL is the endpoint of a remote upstream.
	URL string `json:"url,omitempty"`
	// AllowedHosts limits the hosts a remote upstream may be reached at,
	// including the endpoint a legacy SSE server advertises. Default: the
	// host of URL only.
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
	// Headers are static headers sent to a remote upstream (e.g.
	// Authorization). The downstream client's own credentials are never
	// forwarded. Default: none.
	Headers map[string]string `json:"headers,omitempty"`
	// CAFile adds a PEM CA bundle to the system trust store.
	CAFile string `json:"ca_file,omitempty"`
	// ClientCertFile and ClientKeyFile enable mTLS; both or neither.
	ClientCertFile string `json:"client_cert_file,omitempty"`
	ClientKeyFile  string `json:"client_key_file,omitempty"`
	// AllowMissingToolSchemas lets tools without an inputSchema be called.
	// Default: false (such tools are refused).
	AllowMissingToolSchemas bool `json:"allow_missing_tool_schemas,omitempty"`
	// Breaker configures this upstream's circuit breaker.
	Breaker BreakerConfig `json:"breaker,omitempty"`
	// Timeouts bound each stage of an upstream exchange.
	Timeouts Timeouts `json:"timeouts,omitempty"`
}

// BreakerConfig configures an upstream circuit breaker.
type BreakerConfig struct {
	// Enabled turns the breaker on or off. Default: true.
	Enabled *bool `json:"enabled,omitempty"`
	// FailureThreshold failures within FailureWindow open it. Default: 5.
	FailureThreshold int `json:"failure_threshold,omitempty"`
	// FailureWindow is the sliding window of counted failures. Default: 60s.
	FailureWindow time.Duration `json:"failure_window,omitempty"`
	// OpenTimeout is how long it stays open before one probe. Default: 30s.
	OpenTimeout time.Duration `json:"open_timeout,omitempty"`
}

// Timeouts bound the stages of an upstream exchange.
type Timeouts struct {
	// Initialize bounds starting a session (spawn or connect, initialize,
	// first tools/list). Default: 10s.
	Initialize time.Duration `json:"initialize,omitempty"`
	// List bounds tools/list, resources/list and the other list calls.
	// Default: 10s.
	List time.Duration `json:"list,omitempty"`
	// Call bounds tools/call and every other request. Default: 60s.
	Call time.Duration `json:"call,omitempty"`
}

func (c UpstreamConfig) withDefaults() UpstreamConfig {
	if c.Transport == "" && c.Command != "" {
		c.Transport = TransportStdio
	} else if c.Transport == "" {
		c.Transport = TransportStreamableHTTP
	}
	c.Breaker = c.Breaker.withDefaults()
	c.Timeouts = c.Timeouts.withDefaults()
	return c
}

func (b BreakerConfig) withDefaults() BreakerConfig {
	if b.Enabled == nil {
		on := true
		b.Enabled = &on
	}
	b.FailureThreshold = orDefault(b.FailureThreshold, DefaultFailureThreshold)
	b.FailureWindow = orDefault(b.FailureWindow, DefaultFailureWindow)
	b.OpenTimeout = orDefault(b.OpenTimeout, DefaultOpenTimeout)
	return b
}

func (t Timeouts) withDefaults() Timeouts {
	t.Initialize = orDefault(t.Initialize, DefaultInitializeTimeout)
	t.List = orDefault(t.List, DefaultListTimeout)
	t.Call = orDefault(t.Call, DefaultCallTimeout)
	return t
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// validate checks a defaulted config.
func (c UpstreamConfig) validate() error {
	if !validName(c.Name) {
		return fmt.Errorf("upstream %q: name must be non-empty letters, digits, '-', '_' or '.'", c.Name)
	}
	var err error
	switch c.Transport {
	case TransportStdio:
		err = c.validateStdio()
	case TransportStreamableHTTP, TransportSSE:
		err = c.validateRemote()
	default:
		err = fmt.Errorf("unknown transport %q", c.Transport)
	}
	if err != nil {
		return fmt.Errorf("upstream %q: %w", c.Name, err)
	}
	return nil
}

func (c UpstreamConfig) validateStdio() error {
	if c.Command == "" || c.URL != "" {
		return errors.New("a stdio upstream needs command and no url")
	}
	for _, name := range c.EnvAllowlist {
		if name == "" || strings.ContainsAny(name, "*?[]=") {
			return fmt.Errorf("env_allowlist: %q is not an exact variable name", name)
		}
	}
	if c.Workdir == "" {
		return nil
	}
	if st, err := os.Stat(c.Workdir); err != nil || !st.IsDir() {
		return fmt.Errorf("workdir %q is not a directory", c.Workdir)
	}
	return nil
}

func (c UpstreamConfig) validateRemote() error {
	if c.URL == "" || c.Command != "" {
		return errors.New("a remote upstream needs url and no command")
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q must be an absolute http(s) URL", c.URL)
	}
	if !hostAllowed(u.Hostname(), c.allowedHosts()) {
		return fmt.Errorf("url host %q is not in allowed_hosts", u.Hostname())
	}
	if (c.ClientCertFile == "") != (c.ClientKeyFile == "") {
		return errors.New("client_cert_file and client_key_file go together")
	}
	return nil
}

func (c UpstreamConfig) allowedHosts() []string {
	if len(c.AllowedHosts) > 0 {
		return c.AllowedHosts
	}
	if u, err := url.Parse(c.URL); err == nil {
		return []string{u.Hostname()}
	}
	return nil
}

func hostAllowed(host string, allowed []string) bool {
	for _, pattern := range allowed {
		if ok, _ := filepath.Match(strings.ToLower(pattern), strings.ToLower(host)); ok {
			return true
		}
	}
	return false
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '-' || r == '_' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// key is the content hash of a defaulted config.
func (c UpstreamConfig) key() string {
	b, _ := json.Marshal(c) // map keys are sorted by encoding/json
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// RouteConfig configures one nomos_mcp endpoint.
type RouteConfig struct {
	// Upstreams are the names of the upstreams this route exposes, in
	// priority order. Required.
	Upstreams []string `json:"upstreams"`
	// Prefixes maps an upstream name to the prefix of its tool and prompt
	// names. Default: none with one upstream, "<name>_" with several.
	Prefixes map[string]string `json:"prefixes,omitempty"`
	// Include and Exclude are globs over the exposed tool names (after
	// prefixing). A tool is shown when it matches some Include (or Include
	// is empty) and no Exclude. Default: all tools.
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	// MaxBodyBytes caps a request body. Default: 1 MiB.
	MaxBodyBytes int64 `json:"max_body_bytes,omitempty"`
	// AllowedOrigins lists the exact Origin values browsers may send
	// (scheme://host[:port]); "*" allows any. Requests without Origin are
	// not browsers and pass. Default: loopback origins only.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
	// AllowedHosts lists globs of the Host header (without port) accepted.
	// Default: any Host; set it when the endpoint is reachable beyond
	// loopback, so DNS rebinding cannot reach it under a foreign name.
	AllowedHosts []string `json:"allowed_hosts,omitempty"`
	// SessionTTL expires idle downstream sessions. Default: 30m.
	SessionTTL time.Duration `json:"session_ttl,omitempty"`
	// Transport is the downstream transport recorded in audit:
	// streamable_http, or stdio when nomos mcp stdio bridges to the
	// gateway in process. Default: streamable_http.
	Transport string `json:"-"`
}

// Route defaults.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultSessionTTL   = 30 * time.Minute
)

func (r RouteConfig) withDefaults() RouteConfig {
	if r.MaxBodyBytes <= 0 {
		r.MaxBodyBytes = DefaultMaxBodyBytes
	}
	r.SessionTTL = orDefault(r.SessionTTL, DefaultSessionTTL)
	return r
}

// prefixFor is the name prefix of upstream name on this route.
func (r RouteConfig) prefixFor(name string) string {
	if p, ok := r.Prefixes[name]; ok {
		return p
	}
	if len(r.Upstreams) > 1 {
		return name + "_"
	}
	return ""
}
