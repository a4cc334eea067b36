package caddymodule

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/internal/loopguard"
	"github.com/caddy-nomos/nomos/internal/ratelimit"
	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/mcp"
)

// provisionState opens the shared Redis client, pooled by its resolved
// config so an unchanged reload keeps its connections and breaker. It
// never waits for the server: a replica starts while Redis is down and
// denies, as state_unavailable, what needs it.
func (a *App) provisionState() error {
	if a.State == nil {
		return nil
	}
	cfg, err := a.stateConfig()
	if err != nil {
		return fmt.Errorf("nomos: state: %w", err)
	}
	key := configKey("state", cfg)
	a.track(key)
	c, err := loadPooled(key, func() (*sharedstate.Client, func() error, error) {
		c, err := sharedstate.Open(cfg)
		if err != nil {
			return nil, nil, err
		}
		return c, c.Close, nil
	})
	if err != nil {
		return fmt.Errorf("nomos: state: %w", err)
	}
	a.shared, a.stateKey = c, key
	return nil
}

// stateConfig validates the state block and resolves its secret.
func (a *App) stateConfig() (sharedstate.Config, error) {
	s := a.State
	if s.Redis == nil {
		return sharedstate.Config{}, errors.New("redis is required")
	}
	if err := checkAdvertise(s.Advertise); err != nil {
		return sharedstate.Config{}, err
	}
	r := s.Redis
	cfg := sharedstate.Config{
		Address: resolve(r.Address), URL: resolve(r.URL), Username: resolve(r.Username), Password: resolve(r.Password),
		DB: r.DB, TLS: r.TLS, CAFile: r.TLSCAFile, ServerName: r.TLSServerName, KeyPrefix: r.KeyPrefix,
		DialTimeout: time.Duration(r.DialTimeout), ReadTimeout: time.Duration(r.ReadTimeout),
		WriteTimeout: time.Duration(r.WriteTimeout),
	}
	if r.Password != "" && !strings.HasPrefix(r.Password, "{") {
		return cfg, errors.New("redis password must be a placeholder such as {env.NOMOS_REDIS_PASSWORD}, not the secret itself")
	}
	if u, err := url.Parse(r.URL); err == nil && u.User != nil {
		if _, literal := u.User.Password(); literal {
			return cfg, errors.New("redis url must not carry a password; set password {env.NOMOS_REDIS_PASSWORD}")
		}
	}
	if r.Password != "" && cfg.Password == "" {
		return cfg, fmt.Errorf("redis password %s is empty (unset environment variable?)", r.Password)
	}
	return cfg, cfg.Validate()
}

func checkAdvertise(u string) error {
	if u == "" {
		return nil
	}
	_, err := mcp.ParseAdvertise(u)
	return err
}

// sharedLimits puts the rate_limits buckets on the shared state, when
// there is one, so N replicas allow each limit once.
func (a *App) sharedLimits() *ratelimit.Shared {
	if a.shared == nil || a.limiter == nil {
		return nil
	}
	return ratelimit.NewShared(a.limiter, a.shared)
}

// sharedLoopGuard puts the loop breakers' agent windows on the shared
// state, when there is one.
func (a *App) sharedLoopGuard() *loopguard.Shared {
	if a.shared == nil || a.loopGuard == nil {
		return nil
	}
	return loopguard.NewShared(a.loopGuard, a.shared)
}
