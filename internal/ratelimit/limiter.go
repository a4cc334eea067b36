package ratelimit

import (
	"math"
	"math/bits"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// micro is the fixed-point scale of bucket levels: one token is 1e6
// micro-tokens, so refill never rounds a fraction up into a whole token.
const micro = 1_000_000

// Action is what the limiter needs of a normalized action.
type Action struct {
	Principal  string
	ActionType string
	Resource   string
}

// Hit is one matching rule's bucket as the check found it.
type Hit struct {
	RuleID          string
	Scope           string
	BucketKey       string
	RefillPerMinute float64
	// Remaining is the whole tokens left after the check (after
	// consumption when the action passed).
	Remaining int64
	// Allowed is false for a bucket that had no token.
	Allowed bool
}

// Verdict is the outcome of one check.
type Verdict struct {
	// Allowed is true when every matching bucket had a token; then one was
	// taken from each. When false, none was taken.
	Allowed bool
	// Hits lists every matching bucket, sorted by rule id.
	Hits []Hit
	// Denied is the first empty bucket of a denial.
	Denied *Hit
	// RetryAfter is how long until every empty bucket holds a token again.
	RetryAfter time.Duration
}

// Rules enforces a rule set. It is safe for concurrent use; one mutex
// makes each check-then-consume atomic across all of an action's buckets.
type Rules struct {
	rules      []compiledRule
	evictAfter time.Duration
	maxBuckets int
	quota      int // buckets one principal may hold

	mu      sync.Mutex
	buckets *simplelru.LRU[string, *bucket]
	owned   map[string]int // buckets held per principal
}

type bucket struct {
	level    int64 // micro-tokens
	lastSeen time.Time
	owner    string // the principal whose action made it
}

// principalShare: one principal holds at most 1/principalShare of
// max_buckets, so no principal can crowd out another's buckets.
const principalShare = 8

// New validates cfg and builds a limiter whose buckets all start full.
func NewRules(cfg RulesConfig) (*Rules, error) {
	if cfg.EvictAfter <= 0 {
		cfg.EvictAfter = DefaultEvictAfter
	}
	if cfg.MaxBuckets <= 0 {
		cfg.MaxBuckets = DefaultMaxBuckets
	}
	rules, err := compile(&cfg)
	if err != nil {
		return nil, err
	}
	l := &Rules{rules: rules, evictAfter: cfg.EvictAfter, maxBuckets: cfg.MaxBuckets,
		quota: max(cfg.MaxBuckets/principalShare, 1), owned: map[string]int{}}
	// Only idle buckets leave (prune, or a key past evictAfter reused):
	// the LRU is never asked to evict for room, see refill.
	lru, err := simplelru.NewLRU[string, *bucket](cfg.MaxBuckets+1, func(_ string, b *bucket) {
		if l.owned[b.owner]--; l.owned[b.owner] <= 0 {
			delete(l.owned, b.owner)
		}
	})
	if err != nil {
		return nil, err
	}
	l.buckets = lru
	return l, nil
}

// Check takes one token from every bucket of every rule matching a, or
// none when any of them is empty.
func (l *Rules) Check(a Action, now time.Time) Verdict {
	matched := l.matching(a)
	if len(matched) == 0 {
		return Verdict{Allowed: true}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prune(now)
	bs, v := l.inspect(a, matched, now)
	if !v.Allowed {
		v.Denied = firstDenied(v.Hits)
		return v
	}
	for i := range bs {
		bs[i].level -= micro
		v.Hits[i].Remaining = bs[i].level / micro
	}
	return v
}

// inspect is the first pass: refill every matching bucket and find the
// empty ones, taking nothing.
func (l *Rules) inspect(a Action, matched []*compiledRule, now time.Time) ([]*bucket, Verdict) {
	bs := make([]*bucket, len(matched))
	v := Verdict{Allowed: true, Hits: make([]Hit, len(matched))}
	for i, r := range matched {
		key := r.bucketKey(a)
		bs[i] = l.refill(key, r, a.Principal, now)
		v.Hits[i] = Hit{RuleID: r.ID, Scope: r.Scope, BucketKey: key, RefillPerMinute: r.RefillPerMinute,
			Remaining: bs[i].level / micro, Allowed: bs[i].level >= micro}
		if !v.Hits[i].Allowed {
			v.Allowed = false
			v.RetryAfter = max(v.RetryAfter, r.untilToken(bs[i], now))
		}
	}
	return bs, v
}

func (l *Rules) matching(a Action) []*compiledRule {
	var out []*compiledRule
	for i := range l.rules {
		if l.rules[i].matches(a) {
			out = append(out, &l.rules[i])
		}
	}
	return out
}

// refill returns key's bucket topped up to now. A bucket not seen for
// evictAfter starts over full, which checkEviction makes equivalent. A
// bucket in use is never forgotten to make room: that would refill it (an
// agent could empty a bucket, then flood made-up keys until it was evicted
// and came back full). When principal holds its share of max_buckets, or
// every bucket is in use, a new key gets an empty bucket that is not kept:
// the action is refused until buckets go idle.
func (l *Rules) refill(key string, r *compiledRule, principal string, now time.Time) *bucket {
	b, ok := l.buckets.Get(key)
	if ok && now.Sub(b.lastSeen) < l.evictAfter {
		r.topUp(b, now)
		return b
	}
	if ok {
		l.buckets.Remove(key) // idle: it starts over full
	}
	if l.owned[principal] >= l.quota || l.buckets.Len() >= l.maxBuckets {
		return &bucket{level: 0, lastSeen: now, owner: principal}
	}
	b = &bucket{level: r.capacity, lastSeen: now, owner: principal}
	l.buckets.Add(key, b)
	l.owned[principal]++
	return b
}

// topUp adds the micro-tokens earned since lastSeen. lastSeen advances only
// by the time those whole micro-tokens took (rounded down), so the
// fraction still being earned is carried, never lost and never granted
// early.
func (r *compiledRule) topUp(b *bucket, now time.Time) {
	elapsed := now.Sub(b.lastSeen)
	if elapsed <= 0 {
		return
	}
	if elapsed >= r.fullAfter {
		b.level, b.lastSeen = r.capacity, now
		return
	}
	hi, lo := bits.Mul64(uint64(elapsed), r.microPerMinute)
	add, _ := bits.Div64(hi, lo, uint64(time.Minute))
	b.level += int64(add)
	if b.level >= r.capacity {
		b.level, b.lastSeen = r.capacity, now
		return
	}
	spent := time.Duration(float64(add)*float64(time.Minute)/float64(r.microPerMinute)) - 1
	b.lastSeen = b.lastSeen.Add(max(spent, 0))
}

// prune forgets idle buckets. Every check touches its buckets, so the
// least recently used bucket is also the one idle longest: pruning stops
// at the first one still in use.
func (l *Rules) prune(now time.Time) {
	for {
		_, b, ok := l.buckets.GetOldest()
		if !ok || now.Sub(b.lastSeen) < l.evictAfter {
			return
		}
		l.buckets.RemoveOldest()
	}
}

// untilToken is how long from now the bucket takes to reach one token,
// counting the fraction it has been earning since lastSeen.
func (r *compiledRule) untilToken(b *bucket, now time.Time) time.Duration {
	missing := float64(micro - b.level)
	need := time.Duration(math.Ceil(missing * float64(time.Minute) / float64(r.microPerMinute)))
	return max(0, b.lastSeen.Add(need).Sub(now))
}

func firstDenied(hits []Hit) *Hit {
	for i := range hits {
		if !hits[i].Allowed {
			return &hits[i]
		}
	}
	return nil
}

// Buckets is the number of buckets held, for tests and diagnostics.
func (l *Rules) Buckets() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buckets.Len()
}
