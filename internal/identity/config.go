package identity

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Defaults applied by New to zero fields.
const (
	DefaultMaxClockSkew    = 5 * time.Minute
	DefaultReplayCacheSize = 10000
	DefaultJWKSRefresh     = 15 * time.Minute
	DefaultPrincipalClaim  = "sub"
)

// maxNameLen bounds principal and agent names from any source.
const maxNameLen = 2048

// Config configures an Authenticator.
type Config struct {
	// APIKeys map bearer API keys to principals. Keys must be unique.
	APIKeys []APIKey
	// AgentSecrets are the HMAC secrets of the agents. Agent ids must be
	// unique and secrets non-empty.
	AgentSecrets []AgentSecret
	// RequireAgent makes Authenticate fail without an authenticated agent.
	RequireAgent bool
	// LegacyBodySignatures accepts the legacy agent signature over the body
	// alone (or "<timestamp>.<body>"), which binds neither method, path nor
	// principal. Off: only v2 signatures are accepted.
	LegacyBodySignatures bool
	// RequireTimestamp makes X-Nomos-Timestamp mandatory on legacy body
	// signatures (v2 signatures always carry one).
	RequireTimestamp bool
	// MaxClockSkew bounds the distance between X-Nomos-Timestamp and the
	// server clock. Default: 5m.
	MaxClockSkew time.Duration
	// ReplayCacheSize bounds the number of remembered agent signatures
	// (nonces). Default: 10000.
	ReplayCacheSize int
	// ReplayStore, when set, is used instead of a new ReplayCache built
	// from ReplayCacheSize and MaxClockSkew: the caller shares one across
	// Authenticators so that rebuilding one forgets no nonce, or across
	// replicas. Not part of the JSON form, which keys the reload pool.
	ReplayStore ReplayStore `json:"-"`
	// JWT enables JWT bearer tokens when non-nil.
	JWT *JWTConfig
	// MTLS enables principals from verified client certificates when non-nil.
	MTLS *MTLSConfig
	// TrustedHeaders names identity headers honoured only from trusted
	// proxies. Off when nil.
	TrustedHeaders *TrustedHeaderConfig
	// Anonymous is the principal given to requests that present no
	// credential at all. Off when empty. For loopback development only.
	Anonymous string
	// AnonymousAgent is the agent given to an anonymous request that
	// presents no agent credential. Off when empty.
	AnonymousAgent string
	// Clock returns the current time. Default: time.Now. Not part of the
	// JSON form, which keys the reload pool.
	Clock func() time.Time `json:"-"`
}

// APIKey maps one bearer API key to a principal.
type APIKey struct {
	Key       string
	Principal string
}

// AgentSecret is the HMAC secret of one agent.
type AgentSecret struct {
	AgentID string
	Secret  string
}

// TrustedHeaderConfig names the headers a trusted proxy sets.
type TrustedHeaderConfig struct {
	// PrincipalHeader carries the principal. Off when empty.
	PrincipalHeader string
	// AgentHeader carries the agent. Off when empty.
	AgentHeader string
}

// New validates cfg, applies its defaults and returns an Authenticator. It
// does no I/O: a JWKS is fetched by Start or on first use.
func New(cfg Config) (*Authenticator, error) {
	a := &Authenticator{
		requireAgent: cfg.RequireAgent,
		requireTS:    cfg.RequireTimestamp,
		legacy:       cfg.LegacyBodySignatures,
		clock:        cfg.Clock,
	}
	if a.clock == nil {
		a.clock = time.Now
	}
	steps := []func(Config) error{a.setAPIKeys, a.setAgents, a.setReplay, a.setJWT, a.setMTLS, a.setTrustedHeaders, a.setAnonymous}
	for _, step := range steps {
		if err := step(cfg); err != nil {
			return nil, fmt.Errorf("identity config: %w", err)
		}
	}
	return a, nil
}

func (a *Authenticator) setAPIKeys(cfg Config) error {
	seen := make(map[[sha256.Size]byte]bool, len(cfg.APIKeys))
	for i, k := range cfg.APIKeys {
		if k.Key == "" {
			return fmt.Errorf("api key %d: empty key", i)
		}
		if err := checkName(k.Principal); err != nil {
			return fmt.Errorf("api key %d: principal: %w", i, err)
		}
		digest := sha256.Sum256([]byte(k.Key))
		if seen[digest] {
			// Name the index, never the key.
			return fmt.Errorf("api key %d: duplicate key", i)
		}
		seen[digest] = true
		a.apiKeys = append(a.apiKeys, apiKey{digest: digest, principal: k.Principal})
	}
	return nil
}

func (a *Authenticator) setAgents(cfg Config) error {
	a.agents = make(map[string][]byte, len(cfg.AgentSecrets))
	for i, s := range cfg.AgentSecrets {
		if err := checkName(s.AgentID); err != nil {
			return fmt.Errorf("agent secret %d: agent id: %w", i, err)
		}
		if s.Secret == "" {
			return fmt.Errorf("agent secret %d (%s): empty secret", i, s.AgentID)
		}
		if _, dup := a.agents[s.AgentID]; dup {
			return fmt.Errorf("agent secret %d: duplicate agent id %q", i, s.AgentID)
		}
		a.agents[s.AgentID] = []byte(s.Secret)
	}
	return nil
}

func (a *Authenticator) setReplay(cfg Config) error {
	if cfg.MaxClockSkew < 0 {
		return errors.New("max clock skew must not be negative")
	}
	if cfg.ReplayCacheSize < 0 {
		return errors.New("replay cache size must not be negative")
	}
	a.skew = cfg.MaxClockSkew
	if a.skew == 0 {
		a.skew = DefaultMaxClockSkew
	}
	if cfg.ReplayStore != nil {
		a.replay = cfg.ReplayStore
		return nil
	}
	rc, err := NewReplayCache(cfg.ReplayCacheSize, a.skew)
	a.replay = rc
	return err
}

func (a *Authenticator) setJWT(cfg Config) error {
	if cfg.JWT == nil {
		return nil
	}
	v, err := newJWTVerifier(*cfg.JWT, a.clock)
	if err != nil {
		return fmt.Errorf("jwt: %w", err)
	}
	a.jwt = v
	return nil
}

func (a *Authenticator) setTrustedHeaders(cfg Config) error {
	th := cfg.TrustedHeaders
	if th == nil {
		return nil
	}
	if th.PrincipalHeader == "" && th.AgentHeader == "" {
		return errors.New("trusted headers: no header named")
	}
	c := &TrustedHeaderConfig{
		PrincipalHeader: http.CanonicalHeaderKey(strings.TrimSpace(th.PrincipalHeader)),
		AgentHeader:     http.CanonicalHeaderKey(strings.TrimSpace(th.AgentHeader)),
	}
	for _, h := range []string{c.PrincipalHeader, c.AgentHeader} {
		if reservedHeader(h) {
			return fmt.Errorf("trusted headers: %s cannot carry a trusted identity", h)
		}
	}
	a.trustedHeaders = c
	return nil
}

func reservedHeader(h string) bool {
	switch h {
	case "Authorization", HeaderAgentID, HeaderAgentSignature, HeaderTimestamp, HeaderNonce:
		return true
	}
	return false
}

func (a *Authenticator) setAnonymous(cfg Config) error {
	if cfg.Anonymous == "" {
		if cfg.AnonymousAgent != "" {
			return errors.New("anonymous agent set without an anonymous principal")
		}
		return nil
	}
	if err := checkName(cfg.Anonymous); err != nil {
		return fmt.Errorf("anonymous principal: %w", err)
	}
	a.anonymous = cfg.Anonymous
	if cfg.AnonymousAgent == "" {
		return nil
	}
	if err := checkName(cfg.AnonymousAgent); err != nil {
		return fmt.Errorf("anonymous agent: %w", err)
	}
	a.anonymousAgent = cfg.AnonymousAgent
	return nil
}

// checkName accepts a principal or agent name: non-empty, bounded, valid
// UTF-8 and free of control characters, so it is safe in logs and audit.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case len(s) > maxNameLen:
		return fmt.Errorf("name longer than %d bytes", maxNameLen)
	case !utf8.ValidString(s):
		return errors.New("name is not valid utf-8")
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return errors.New("name contains a control character")
	case strings.TrimSpace(s) != s:
		return errors.New("name has surrounding white space")
	}
	return nil
}
