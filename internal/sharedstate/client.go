package sharedstate

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

// ErrUnavailable marks every failure to use the shared state.
var ErrUnavailable = errors.New("shared state unavailable")

// Config says how to reach the server. Address or URL is required.
type Config struct {
	// Address is host:port.
	Address string
	// URL is a redis:// or rediss:// URL; it may carry the database and
	// credentials. Mutually exclusive with Address.
	URL string
	// Username and Password authenticate (Redis 6 ACLs or requirepass).
	Username string
	Password string
	// DB is the database number.
	DB int
	// TLS turns on TLS; CAFile adds a CA to trust; ServerName overrides
	// the name checked in the server's certificate.
	TLS        bool
	CAFile     string
	ServerName string
	// KeyPrefix starts every key, so several deployments can share a
	// server.
	KeyPrefix string
	// DialTimeout, ReadTimeout and WriteTimeout bound each operation.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// Breaker: FailureThreshold failures within FailureWindow open it for
	// OpenTimeout.
	FailureThreshold int
	FailureWindow    time.Duration
	OpenTimeout      time.Duration
}

// Defaults for the zero values of Config.
const (
	DefaultKeyPrefix        = "nomos:"
	DefaultDialTimeout      = 2 * time.Second
	DefaultReadTimeout      = time.Second
	DefaultWriteTimeout     = time.Second
	DefaultFailureThreshold = 5
	DefaultFailureWindow    = 60 * time.Second
	DefaultOpenTimeout      = 5 * time.Second
)

func (c *Config) applyDefaults() {
	setDefault(&c.KeyPrefix, DefaultKeyPrefix)
	setDefault(&c.DialTimeout, DefaultDialTimeout)
	setDefault(&c.ReadTimeout, DefaultReadTimeout)
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.FailureThreshold, DefaultFailureThreshold)
	setDefault(&c.FailureWindow, DefaultFailureWindow)
	setDefault(&c.OpenTimeout, DefaultOpenTimeout)
}

func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// Validate refuses a config that could not work.
func (c Config) Validate() error {
	switch {
	case c.Address == "" && c.URL == "":
		return errors.New("shared state: address or url is required")
	case c.Address != "" && c.URL != "":
		return errors.New("shared state: address and url are mutually exclusive")
	case c.URL != "" && !strings.HasPrefix(c.URL, "redis://") && !strings.HasPrefix(c.URL, "rediss://"):
		return fmt.Errorf("shared state: url %q must start with redis:// or rediss://", redactURL(c.URL))
	case c.DB < 0:
		return errors.New("shared state: db must not be negative")
	case c.FailureThreshold < 0 || c.FailureWindow < 0 || c.OpenTimeout < 0:
		return errors.New("shared state: breaker settings must not be negative")
	}
	return nil
}

// redactURL drops the userinfo of a URL for messages.
func redactURL(u string) string {
	if at := strings.LastIndex(u, "@"); at >= 0 {
		if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
			return u[:scheme+3] + "***@" + u[at+1:]
		}
	}
	return u
}

// Client is one connection pool with its breaker.
type Client struct {
	rdb    redis.UniversalClient
	prefix string
	cb     *gobreaker.CircuitBreaker[any]

	mu      sync.Mutex
	lastErr string
}

// Open builds the client. It does not wait for the server: a replica that
// starts while Redis is down still serves, and denies what needs the state.
func Open(cfg Config) (*Client, error) {
	cfg.applyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := options(cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{rdb: redis.NewClient(opts), prefix: cfg.KeyPrefix}
	threshold := uint32(cfg.FailureThreshold)
	c.cb = gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name: "shared_state", MaxRequests: 1, Interval: cfg.FailureWindow, BucketPeriod: cfg.FailureWindow / 10,
		Timeout: cfg.OpenTimeout, ReadyToTrip: func(n gobreaker.Counts) bool { return n.TotalFailures >= threshold },
		IsSuccessful: isAnswer,
	})
	return c, nil
}

func options(cfg Config) (*redis.Options, error) {
	opts := &redis.Options{Addr: cfg.Address}
	if cfg.URL != "" {
		var err error
		if opts, err = redis.ParseURL(cfg.URL); err != nil {
			return nil, fmt.Errorf("shared state: url %q: %w", redactURL(cfg.URL), err)
		}
	}
	if cfg.Username != "" {
		opts.Username = cfg.Username
	}
	if cfg.Password != "" {
		opts.Password = cfg.Password
	}
	if cfg.DB != 0 {
		opts.DB = cfg.DB
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout = cfg.DialTimeout, cfg.ReadTimeout, cfg.WriteTimeout
	opts.MaxRetries = 0 // one try; the breaker, not retries, absorbs outages
	// One dial per operation too: go-redis otherwise dials five times with
	// backoff, so each request waits seconds while Redis is down, before
	// the breaker opens.
	opts.DialerRetries = 1
	if cfg.TLS || cfg.CAFile != "" || cfg.ServerName != "" {
		tc, err := tlsConfig(cfg, opts.TLSConfig)
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = tc
	}
	return opts, nil
}

func tlsConfig(cfg Config, base *tls.Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		tc = base.Clone()
	}
	if cfg.ServerName != "" {
		tc.ServerName = cfg.ServerName
	}
	if cfg.CAFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("shared state: ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("shared state: ca_file %s holds no PEM certificate", cfg.CAFile)
	}
	tc.RootCAs = pool
	return tc, nil
}

// isAnswer: anything the server answered (including "no such key" and a
// lost optimistic transaction) is a success for the breaker.
func isAnswer(err error) bool {
	var a *answerError
	return err == nil || errors.Is(err, redis.Nil) || errors.Is(err, redis.TxFailedErr) || errors.As(err, &a)
}

// Answer marks an error the caller decided from what the server answered
// (a record not found, a rule refused): Do returns it as it is, and the
// breaker does not count it as a failure of the server.
func Answer(err error) error { return &answerError{err} }

type answerError struct{ err error }

func (a *answerError) Error() string { return a.err.Error() }
func (a *answerError) Unwrap() error { return a.err }

// Key is the prefixed key of parts joined by ':'.
func (c *Client) Key(parts ...string) string {
	return c.prefix + strings.Join(parts, ":")
}

// Redis is the underlying client, for stores built on this package.
func (c *Client) Redis() redis.UniversalClient { return c.rdb }

// Do runs fn under the breaker. Any failure that is not a server answer
// is returned wrapping ErrUnavailable.
func (c *Client) Do(ctx context.Context, fn func(context.Context, redis.UniversalClient) error) error {
	_, err := c.cb.Execute(func() (any, error) { return nil, fn(ctx, c.rdb) })
	var a *answerError
	if errors.As(err, &a) {
		return a.err
	}
	if err == nil || isAnswer(err) {
		return err
	}
	c.noteError(err)
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return fmt.Errorf("%w: breaker open after repeated failures", ErrUnavailable)
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}

func (c *Client) noteError(err error) {
	c.mu.Lock()
	c.lastErr = err.Error()
	c.mu.Unlock()
}

// Health is what the doctor and the metrics report.
type Health struct {
	// Breaker is closed, half-open or open.
	Breaker string `json:"breaker"`
	// LastError is the last failure seen, for operators (never for clients).
	LastError string `json:"last_error,omitempty"`
}

// Health reports the breaker state and the last failure.
func (c *Client) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Health{Breaker: c.cb.State().String(), LastError: c.lastErr}
}

// Ping checks that the server answers.
func (c *Client) Ping(ctx context.Context) error {
	return c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error { return r.Ping(ctx).Err() })
}

// Close closes the pool.
func (c *Client) Close() error { return c.rdb.Close() }
