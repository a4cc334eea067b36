package ratelimit

// Limiter (below) is a plain per-key token bucket (x/time/rate in a
// bounded LRU, so minting keys cannot grow memory), for transport pacing
// such as the MCP gateway's initialize limit.

import (
	"errors"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// DefaultMaxKeys bounds the number of buckets kept.
const DefaultMaxKeys = 10000

// Config is a token bucket per key: Events per Interval, with Burst.
type Config struct {
	Events   int
	Interval time.Duration
	// Burst is the bucket size. Default: Events.
	Burst int
	// MaxKeys bounds the buckets kept; the least recently used go first
	// (and start full again if they come back). Default: 10000.
	MaxKeys int
}

// Limiter decides whether one more event fits a key's bucket. It is safe
// for concurrent use.
type Limiter struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	keys  *lru.Cache[string, *rate.Limiter]
}

// New validates cfg and builds the limiter.
func New(cfg Config) (*Limiter, error) {
	if cfg.Events <= 0 || cfg.Interval <= 0 {
		return nil, errors.New("ratelimit: events and interval must be positive")
	}
	if cfg.Burst <= 0 {
		cfg.Burst = cfg.Events
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	keys, err := lru.New[string, *rate.Limiter](cfg.MaxKeys)
	if err != nil {
		return nil, err
	}
	per := cfg.Interval / time.Duration(cfg.Events)
	return &Limiter{limit: rate.Every(per), burst: cfg.Burst, keys: keys}, nil
}

// Allow takes one token from key's bucket at now, reporting whether there
// was one.
func (l *Limiter) Allow(key string, now time.Time) bool {
	l.mu.Lock()
	b, ok := l.keys.Get(key)
	if !ok {
		b = rate.NewLimiter(l.limit, l.burst)
		l.keys.Add(key, b)
	}
	l.mu.Unlock()
	return b.AllowN(now, 1)
}
