package caddymodule

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
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
	if err := registerStateMetric(a.ctx, c); err != nil {
		return fmt.Errorf("nomos: metrics: %w", err)
	}
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
	if r.Password != "" && cfg.Password == "" {
		return cfg, fmt.Errorf("redis password %s is empty (unset environment variable?)", r.Password)
	}
	return cfg, cfg.Validate()
}

func checkAdvertise(u string) error {
	if u == "" {
		return nil
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.Path != "" && p.Path != "/" {
		return fmt.Errorf("advertise %q must be an http(s) URL with a host and no path", u)
	}
	return nil
}

// stateMetric is the breaker state of the shared state client.
const stateMetric = "nomos_state_breaker"

// stateCollector reports the breaker of the current config's client at
// scrape time. One collector lives per metrics registry; a reload points it
// at the new client.
type stateCollector struct {
	desc   *prometheus.Desc
	client atomic.Pointer[sharedstate.Client]
}

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c := s.client.Load()
	if c == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, breakerValue(c.Health().Breaker))
}

// breakerValue encodes a breaker state as a gauge: 0 closed (healthy),
// 1 half-open (probing), 2 open (Redis unreachable, decisions denied).
func breakerValue(state string) float64 {
	switch state {
	case "closed":
		return 0
	case "half-open":
		return 1
	}
	return 2
}

func registerStateMetric(ctx caddy.Context, c *sharedstate.Client) error {
	col := &stateCollector{desc: prometheus.NewDesc(stateMetric,
		"Breaker of the shared state (Redis) client: 0 closed, 1 half-open, 2 open (decisions needing it are denied as state_unavailable).",
		nil, nil)}
	err := ctx.GetMetricsRegistry().Register(col)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*stateCollector); ok {
			col, err = existing, nil
		}
	}
	if err != nil {
		return err
	}
	col.client.Store(c)
	return nil
}

// Interface guards
var _ prometheus.Collector = (*stateCollector)(nil)
