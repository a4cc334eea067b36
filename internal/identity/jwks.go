package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/caddy-nomos/nomos/policy/action"
)

const (
	// jwksMissInterval rate-limits refetches caused by an unknown kid, so
	// tokens with random kids cannot make Nomos hammer the IdP.
	jwksMissInterval = 30 * time.Second
	jwksFetchTimeout = 10 * time.Second
	jwksMaxBytes     = 1 << 20
)

// jwksCache holds the last good key set fetched from a JWKS URL. A failed
// fetch keeps the previous keys.
type jwksCache struct {
	url     string
	client  *http.Client
	refresh time.Duration
	clock   func() time.Time
	current atomic.Pointer[[]verifyKey]

	mu          sync.Mutex // serializes fetches; guards the fields below
	lastAttempt time.Time
	lastSuccess time.Time
	lastErr     error
}

func newJWKSCache(cfg JWTConfig, clock func() time.Time) *jwksCache {
	c := &jwksCache{url: cfg.JWKSURL, client: cfg.HTTPClient, refresh: cfg.JWKSRefresh, clock: clock}
	if c.client == nil {
		c.client = &http.Client{Timeout: jwksFetchTimeout}
	}
	if c.refresh == 0 {
		c.refresh = DefaultJWKSRefresh
	}
	return c
}

func (c *jwksCache) keys() []verifyKey {
	if p := c.current.Load(); p != nil {
		return *p
	}
	return nil
}

// refreshOnMiss refetches unless a fetch was attempted within
// jwksMissInterval. Concurrent misses wait for one fetch. The fetch outlives
// a cancelled request, so a client cannot abort it to stall rotation.
func (c *jwksCache) refreshOnMiss(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.lastAttempt.IsZero() && c.clock().Sub(c.lastAttempt) < jwksMissInterval {
		return
	}
	c.fetchLocked(ctx)
}

// refreshNow refetches unconditionally (the periodic refresh).
func (c *jwksCache) refreshNow(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fetchLocked(ctx)
}

func (c *jwksCache) fetchLocked(ctx context.Context) {
	c.lastAttempt = c.clock()
	keys, err := c.fetch(ctx)
	c.lastErr = err
	if err != nil {
		return
	}
	c.lastSuccess = c.lastAttempt
	c.current.Store(&keys)
}

func (c *jwksCache) fetch(ctx context.Context) ([]verifyKey, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: fetch: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: fetch: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, jwksMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("jwks: read: %w", err)
	}
	if len(body) > jwksMaxBytes {
		return nil, errors.New("jwks: document larger than 1 MiB")
	}
	return parseJWKS(body)
}

// parseJWKS keeps the usable signature keys and skips the rest (encryption
// keys, symmetric keys, unknown key types, weak keys), so one odd key does
// not discard the whole set.
func parseJWKS(body []byte) ([]verifyKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := action.CheckStrictJSON(body); err != nil {
		return nil, fmt.Errorf("jwks: decode: %w", err)
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("jwks: decode: %w", err)
	}
	var keys []verifyKey
	for _, raw := range doc.Keys {
		if k, ok := parseJWK(raw); ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks: no usable signature key")
	}
	return keys, nil
}

func parseJWK(raw []byte) (verifyKey, bool) {
	var jwk jose.JSONWebKey
	if jwk.UnmarshalJSON(raw) != nil || !jwk.IsPublic() || jwk.Use == "enc" {
		return verifyKey{}, false
	}
	if checkPublicKey(jwk.Key) != nil {
		return verifyKey{}, false
	}
	return verifyKey{kid: jwk.KeyID, alg: jwk.Algorithm, key: jwk.Key}, true
}

// Start runs the JWKS refresher when a JWKS URL is configured: a fetch now,
// then one every JWKSRefresh, until ctx is done. Later calls are no-ops.
func (a *Authenticator) Start(ctx context.Context) {
	if a.jwt == nil || a.jwt.jwks == nil {
		return
	}
	a.startOnce.Do(func() { go a.jwt.jwks.run(ctx) })
}

func (c *jwksCache) run(ctx context.Context) {
	ticker := time.NewTicker(c.refresh)
	defer ticker.Stop()
	for {
		c.safeRefresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// safeRefresh keeps a panic in a refresh from killing the process.
func (c *jwksCache) safeRefresh(ctx context.Context) {
	defer func() {
		if r := recover(); r != nil {
			c.mu.Lock()
			c.lastErr = fmt.Errorf("jwks: refresh panicked: %v", r)
			c.mu.Unlock()
		}
	}()
	c.refreshNow(ctx)
}

// JWKSStatus reports the time of the last successful JWKS fetch and the
// error of the last attempt, for health checks. Both are zero when no JWKS
// URL is configured or no fetch happened yet.
func (a *Authenticator) JWKSStatus() (lastSuccess time.Time, lastErr error) {
	if a.jwt == nil || a.jwt.jwks == nil {
		return time.Time{}, nil
	}
	c := a.jwt.jwks
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastSuccess, c.lastErr
}
