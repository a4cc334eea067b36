package mcp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/internal/pins"
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

// UpstreamConfig declares one upstream MCP server. It is the engine's
// plain options struct: the JSON schema and its docs are the nomos app's
// (caddymodule.UpstreamConfig).
type UpstreamConfig struct {
	// Name identifies the upstream in routes, resources (mcp://<name>/...)
	// and audit. Required; letters, digits, '-', '_' and '.'.
	Name string
	// Transport is stdio, streamable_http or sse. Default: stdio when
	// Command is set, streamable_http when URL is set.
	Transport string
	// Command and Args start a stdio upstream.
	Command string
	Args    []string
	// Env holds fixed environment values of the child; they win over
	// EnvAllowlist. Default: none.
	Env map[string]string
	// EnvAllowlist names parent environment variables copied into the
	// child's otherwise empty environment. Default: none.
	EnvAllowlist []string
	// Workdir is the child's working directory; it must exist. Default:
	// the gateway's.
	Workdir string
	// URL is the endpoint of a remote upstream.
	URL string
	// AllowedHosts limits the hosts a remote upstream may be reached at,
	// including the endpoint a legacy SSE server advertises. Default: the
	// host of URL only.
	AllowedHosts []string
	// Headers are static headers sent to a remote upstream (e.g.
	// Authorization). The downstream client's own credentials are never
	// forwarded. Default: none.
	Headers map[string]string
	// TrustedCA adds a PEM CA bundle to the system trust store.
	TrustedCA string
	// ClientCert and ClientKey are PEM files that enable mTLS; both or
	// neither.
	ClientCert string
	ClientKey  string
	// AllowMissingToolSchemas lets tools without an inputSchema be called.
	// Default: false (such tools are refused).
	AllowMissingToolSchemas bool
	// Breaker configures this upstream's circuit breaker.
	Breaker BreakerConfig
	// Timeouts bound each stage of an upstream exchange.
	Timeouts Timeouts
	// Pin is what a tool definition that differs from its reviewed pin
	// does: off, warn or enforce (see package internal/pins). Default:
	// enforce.
	Pin pins.Mode
}

// BreakerConfig configures an upstream circuit breaker.
type BreakerConfig struct {
	// Disabled turns the breaker off. Default: false (on).
	Disabled bool
	// FailureThreshold failures within FailureWindow open it. Default: 5.
	FailureThreshold int
	// FailureWindow is the sliding window of counted failures. Default: 60s.
	FailureWindow time.Duration
	// OpenTimeout is how long it stays open before one probe. Default: 30s.
	OpenTimeout time.Duration
}

// Timeouts bound the stages of an upstream exchange.
type Timeouts struct {
	// Initialize bounds starting a session (spawn or connect, initialize,
	// first tools/list). Default: 10s.
	Initialize time.Duration
	// List bounds tools/list, resources/list and the other list calls.
	// Default: 10s.
	List time.Duration
	// Call bounds tools/call and every other request. Default: 60s.
	Call time.Duration
}

func (c UpstreamConfig) withDefaults() UpstreamConfig {
	if c.Transport == "" && c.Command != "" {
		c.Transport = TransportStdio
	} else if c.Transport == "" {
		c.Transport = TransportStreamableHTTP
	}
	c.Breaker = c.Breaker.withDefaults()
	c.Timeouts = c.Timeouts.withDefaults()
	if c.Pin == "" {
		c.Pin = pins.ModeEnforce
	}
	return c
}

func (b BreakerConfig) withDefaults() BreakerConfig {
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

// Validate checks the config with its defaults applied.
func (c UpstreamConfig) Validate() error {
	return c.withDefaults().validate()
}

// validate checks a defaulted config.
func (c UpstreamConfig) validate() error {
	if !validName(c.Name) {
		return fmt.Errorf("upstream %q: name must be non-empty letters, digits, '-', '_' or '.'", c.Name)
	}
	if _, err := pins.ParseMode(string(c.Pin)); err != nil {
		return fmt.Errorf("upstream %q: %w", c.Name, err)
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
	if !hostMatches(u.Hostname(), c.allowedHosts()) {
		return fmt.Errorf("url host %q is not in allowed_hosts", u.Hostname())
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		return errors.New("client_cert and client_key go together")
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

// RouteConfig configures one governed MCP endpoint: the engine's plain
// options struct; the JSON schema and its docs are the nomos_mcp
// handler's (caddymodule.MCPHandler).
type RouteConfig struct {
	// Upstreams are the names of the upstreams this route exposes, in
	// priority order. Required.
	Upstreams []string
	// Prefixes maps an upstream name to the prefix of its tool and prompt
	// names. Default: none with one upstream, "<name>_" with several.
	Prefixes map[string]string
	// Include and Exclude are globs over the exposed tool names (after
	// prefixing). A tool is shown when it matches some Include (or Include
	// is empty) and no Exclude. Default: all tools.
	Include []string
	Exclude []string
	// MaxBodyBytes caps a request body. Default: 1 MiB.
	MaxBodyBytes int64
	// AllowedOrigins lists the exact Origin values browsers may send
	// (scheme://host[:port]); "*" allows any. Requests without Origin are
	// not browsers and pass. Default: loopback origins only.
	AllowedOrigins []string
	// AllowedHosts lists globs of the Host header (without port) accepted.
	// Default: any Host; set it when the endpoint is reachable beyond
	// loopback, so DNS rebinding cannot reach it under a foreign name.
	AllowedHosts []string
	// SessionTTL expires idle downstream sessions. Default: 30m.
	SessionTTL time.Duration
	// MaxSessionsPerPrincipal bounds the live sessions one principal may
	// hold on the route; initialize beyond it is refused with 429
	// session_limit. Default: 256.
	MaxSessionsPerPrincipal int
	// InitializePerMinute paces initialize per principal (a token bucket
	// of that size, refilled over a minute); beyond it initialize is
	// refused with 429 rate_limited. Default: 600.
	InitializePerMinute int
	// InitPacer, when set, paces initialize per principal for every
	// replica together (a shared bucket of InitializePerMinute, on Redis);
	// when it cannot answer, initialize is refused with 503
	// state_unavailable. Default: none (each process paces its own).
	InitPacer InitPacer `json:"-"`
	// Registry, when set, shares the route's sessions with other replicas
	// (bindings and per-principal caps, on Redis). Default: none (sessions
	// and caps are local to this process).
	Registry SessionRegistry `json:"-"`
	// UntrustedHeaders, when set, names the headers a request forwarded
	// to the session's owner must lose: the identity headers only a
	// trusted proxy may set, when in (the client's request) did not come
	// from one. The owner sees this replica as the peer, which an operator
	// may trust; the client's own copies must not ride on that trust.
	// Default: none.
	UntrustedHeaders func(in *http.Request) []string `json:"-"`
	// Transport is the downstream transport recorded in audit:
	// streamable_http, or stdio when nomos mcp stdio bridges to the
	// gateway in process. Default: streamable_http.
	Transport string
}

// Route defaults.
const (
	DefaultMaxBodyBytes            = 1 << 20
	DefaultSessionTTL              = 30 * time.Minute
	DefaultMaxSessionsPerPrincipal = 256
	DefaultInitializePerMinute     = 600
)

func (r RouteConfig) withDefaults() RouteConfig {
	if r.MaxBodyBytes <= 0 {
		r.MaxBodyBytes = DefaultMaxBodyBytes
	}
	r.SessionTTL = orDefault(r.SessionTTL, DefaultSessionTTL)
	r.MaxSessionsPerPrincipal = orDefault(r.MaxSessionsPerPrincipal, DefaultMaxSessionsPerPrincipal)
	r.InitializePerMinute = orDefault(r.InitializePerMinute, DefaultInitializePerMinute)
	if r.Transport == "" {
		r.Transport = DownstreamStreamableHTTP
	}
	return r
}

// Validate checks the route's own settings with defaults applied;
// upstream names are checked when a gateway binds them.
func (r RouteConfig) Validate() error {
	return r.withDefaults().validate()
}

func (r RouteConfig) validate() error {
	if r.Transport != DownstreamStreamableHTTP && r.Transport != DownstreamStdio {
		return fmt.Errorf("unknown downstream transport %q", r.Transport)
	}
	for _, glob := range append(append([]string{}, r.Include...), r.Exclude...) {
		if _, err := path.Match(glob, ""); err != nil {
			return fmt.Errorf("bad tool glob %q: %w", glob, err)
		}
	}
	return nil
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
