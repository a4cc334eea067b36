package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// ReplayStore records the signatures an Authenticator accepted, so that
// none is accepted twice. *ReplayCache is the in-process store; a store
// shared by replicas (Redis) implements the same interface.
type ReplayStore interface {
	// Admit records key for a signature timestamped ts, which the caller
	// has checked to lie within the clock skew of now. It returns an error
	// wrapping ErrReplayed when key is recorded and still replayable,
	// ErrReplayWindow when the store can no longer tell (see ReplayCache),
	// and any other error when it cannot answer; every error refuses the
	// request.
	Admit(ctx context.Context, key string, ts time.Time, now time.Time) error
}

// Replay outcomes of ReplayStore.Admit.
var (
	ErrReplayed     = errors.New("replayed signature")
	ErrReplayWindow = errors.New("replay cache full: retry with a fresh timestamp")
	// ErrReplayBeforeStart refuses a signature timestamped before the
	// replay cache was made (the process started, or a reload changed the
	// cache's size or skew): the nonces seen before are gone.
	ErrReplayBeforeStart = errors.New("signature timestamped before the replay cache started: retry with a fresh timestamp")
)

// replayError turns a ReplayStore refusal into the agent failure a client
// sees. A store that cannot answer fails closed with a generic reason.
func replayError(err error) error {
	switch {
	case errors.Is(err, ErrReplayed):
		return agentError(ErrReplayed.Error())
	case errors.Is(err, ErrReplayWindow), errors.Is(err, ErrReplayBeforeStart):
		return agentError(err.Error())
	}
	return &unavailableError{agentError("replay check unavailable"), err}
}

// unavailableError is an agent failure because the replay store could not
// answer: it is an auth failure (ErrAuth) that also carries the store's
// error (the shared state's ErrUnavailable), so the front door can answer
// state_unavailable instead of a plain 401.
type unavailableError struct {
	auth  error
	cause error
}

func (e *unavailableError) Error() string   { return e.auth.Error() }
func (e *unavailableError) Unwrap() []error { return []error{e.auth, e.cause} }

// ReplayCache remembers authentic agent signatures (v2: agent and nonce;
// legacy: the MAC) for as long as their timestamp is inside the clock skew
// window. It is bounded: when full it forgets the least recently seen entry,
// and if that entry could still be replayed it raises its agent's floor, so
// every signature of that agent timestamped at or before the forgotten one
// is refused from then on. Eviction therefore shrinks the accepted window
// instead of opening a replay hole, and only for the agent whose entry was
// forgotten: one agent flooding the cache (with timestamps up to the skew
// ahead) cannot refuse the others. The floors are few: only configured
// agents' verified signatures are admitted. A cache made by NewReplayCache
// also refuses signatures timestamped before it was made, which a process
// that just started cannot tell from replays. Expiry is checked on read;
// there is no janitor goroutine.
type ReplayCache struct {
	mu     sync.Mutex // makes check-and-add atomic; guards the fields below
	cache  *simplelru.LRU[string, int64]
	skew   int64            // seconds
	start  int64            // signatures timestamped before it are refused
	floors map[string]int64 // per agent: signatures at or before it are refused
	now    int64            // the time of the admit in progress, for onEvict
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
	r, err := newReplayCache(size, int64((skew+time.Second-1)/time.Second))
	if r != nil {
		r.start = time.Now().Unix()
	}
	return r, err
}

func newReplayCache(size int, skewSeconds int64) (*ReplayCache, error) {
	r := &ReplayCache{skew: skewSeconds, start: -1 << 62, floors: map[string]int64{}}
	c, err := simplelru.NewLRU[string, int64](size, r.onEvict)
	if err != nil {
		return nil, fmt.Errorf("replay cache: %w", err)
	}
	r.cache = c
	return r, nil
}

// Admit implements ReplayStore. An entry lasts while its timestamp is
// within the skew; a key seen again after that is recorded anew.
func (r *ReplayCache) Admit(_ context.Context, key string, ts, now time.Time) error {
	return r.admit(key, ts.Unix(), now.Unix())
}

func (r *ReplayCache) admit(key string, ts, now int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts < r.start {
		return ErrReplayBeforeStart
	}
	if floor, ok := r.floors[replayAgent(key)]; ok && ts <= floor {
		return ErrReplayWindow
	}
	if prev, ok := r.cache.Peek(key); ok && now <= prev+r.skew {
		return ErrReplayed
	}
	r.now = now
	r.cache.Add(key, ts)
	return nil
}

// onEvict runs inside Add, under r.mu. An evicted entry that could still
// be accepted raises its agent's floor to its timestamp.
func (r *ReplayCache) onEvict(key string, ts int64) {
	agent := replayAgent(key)
	if floor, ok := r.floors[agent]; r.now <= ts+r.skew && (!ok || ts > floor) {
		r.floors[agent] = ts
	}
}

// replayAgent is the agent of a replay key ("<kind>\x00<agent>\x00<...>").
func replayAgent(key string) string {
	_, rest, _ := strings.Cut(key, "\x00")
	agent, _, _ := strings.Cut(rest, "\x00")
	return agent
}
