package identity

import (
	"fmt"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// replayCache remembers authentic agent signatures until they expire. It is
// a plain LRU with expiry checked on read (no janitor goroutine), bounded so
// a flood cannot exhaust memory; when full it forgets the least recently
// seen signature first.
type replayCache struct {
	mu    sync.Mutex // makes check-and-add atomic
	cache *lru.Cache[string, time.Time]
	ttl   time.Duration
}

func newReplayCache(size int, ttl time.Duration) (*replayCache, error) {
	c, err := lru.New[string, time.Time](size)
	if err != nil {
		return nil, fmt.Errorf("replay cache: %w", err)
	}
	return &replayCache{cache: c, ttl: ttl}, nil
}

// seen reports whether key was recorded and is unexpired at now; otherwise
// it records key until now+ttl.
func (r *replayCache) seen(key string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if expires, ok := r.cache.Peek(key); ok && now.Before(expires) {
		return true
	}
	r.cache.Add(key, now.Add(r.ttl))
	return false
}
