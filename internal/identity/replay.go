package identity

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// ReplayCache remembers authentic agent signatures (v2: agent and nonce;
// legacy: the MAC) for as long as their timestamp is inside the clock skew
// window. It is bounded: when full it forgets the least recently seen entry,
// and if that entry could still be replayed it raises a floor, so every
// signature timestamped at or before the forgotten one is refused from then
// on. Eviction therefore shrinks the accepted window instead of opening a
// replay hole. Expiry is checked on read; there is no janitor goroutine.
type ReplayCache struct {
	mu    sync.Mutex // makes check-and-add atomic; guards the fields below
	cache *simplelru.LRU[string, int64]
	skew  int64 // seconds
	floor int64 // signatures timestamped at or before it are refused
	now   int64 // the time of the admit in progress, for onEvict
}

// NewReplayCache returns an empty cache for size nonces (0 means
// DefaultReplayCacheSize) whose entries last as long as a timestamp stays
// within skew (0 means DefaultMaxClockSkew). Config.ReplayCache shares one
// across Authenticators, so a config reload does not forget used nonces.
func NewReplayCache(size int, skew time.Duration) (*ReplayCache, error) {
	switch {
	case size < 0:
		return nil, errors.New("replay cache size must not be negative")
	case skew < 0:
		return nil, errors.New("max clock skew must not be negative")
	case size == 0:
		size = DefaultReplayCacheSize
	}
	if skew == 0 {
		skew = DefaultMaxClockSkew
	}
	return newReplayCache(size, int64((skew+time.Second-1)/time.Second))
}

func newReplayCache(size int, skewSeconds int64) (*ReplayCache, error) {
	r := &ReplayCache{skew: skewSeconds, floor: -1 << 62}
	c, err := simplelru.NewLRU[string, int64](size, r.onEvict)
	if err != nil {
		return nil, fmt.Errorf("replay cache: %w", err)
	}
	r.cache = c
	return r, nil
}

// admit records key for a signature timestamped ts (Unix seconds), already
// checked to lie within the skew of now. It fails if key is recorded and
// still replayable, or if ts is at or below the floor.
func (r *ReplayCache) admit(key string, ts, now int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts <= r.floor {
		return agentError("replay cache full: retry with a fresh timestamp")
	}
	if prev, ok := r.cache.Peek(key); ok && now <= prev+r.skew {
		return agentError("replayed signature")
	}
	r.now = now
	r.cache.Add(key, ts)
	return nil
}

// onEvict runs inside Add, under r.mu. An evicted entry that could still
// be accepted raises the floor to its timestamp.
func (r *ReplayCache) onEvict(_ string, ts int64) {
	if r.now <= ts+r.skew && ts > r.floor {
		r.floor = ts
	}
}
