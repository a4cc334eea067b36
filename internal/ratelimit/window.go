package ratelimit

import (
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Window is the legacy transport guard: at most Limit requests per key in
// each calendar minute. A request over it is refused before it is read as
// an action (HTTP 429 rate_limited).
type Window struct {
	limit int
	mu    sync.Mutex
	keys  *simplelru.LRU[string, *windowCount]
}

type windowCount struct {
	minute int64
	n      int
}

// NewWindow builds a per-key limit of limit requests per minute, keeping
// at most maxKeys keys (least recently used first out; a forgotten key
// starts its minute again). Default maxKeys: 100000.
func NewWindow(limit, maxKeys int) (*Window, error) {
	if limit <= 0 {
		return nil, errors.New("rate_limit_per_minute must be positive")
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxBuckets
	}
	lru, err := simplelru.NewLRU[string, *windowCount](maxKeys, nil)
	if err != nil {
		return nil, err
	}
	return &Window{limit: limit, keys: lru}, nil
}

// Allow counts one request of key at now, reporting whether it fits.
// Refused requests are not counted.
func (w *Window) Allow(key string, now time.Time) bool {
	minute := now.Unix() / 60
	w.mu.Lock()
	defer w.mu.Unlock()
	c, ok := w.keys.Get(key)
	if !ok || c.minute != minute {
		c = &windowCount{minute: minute}
		w.keys.Add(key, c)
	}
	if c.n >= w.limit {
		return false
	}
	c.n++
	return true
}
