package loopguard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
)

// Shared checks the same caps as its Guard with the agent windows on the
// shared Redis, so N replicas allow each agent's budget once, not N times.
// Session windows stay in the Guard: a session always runs on the replica
// that owns it.
//
// The agent window is fixed, like the Guard's: it starts with the first
// counted call and lasts Window on the Redis server's clock (the keys'
// PEXPIRE), whatever the replicas' clocks say.
type Shared struct {
	g *Guard
	c *sharedstate.Client
}

// NewShared puts g's agent windows on c.
func NewShared(g *Guard, c *sharedstate.Client) *Shared { return &Shared{g: g, c: c} }

// Guard is the guard whose caps s checks.
func (s *Shared) Guard() *Guard { return s.g }

// Check counts c against its session window (in memory) and agent window
// (on Redis), or counts nothing and trips when any cap would be exceeded,
// like Guard.Check. An error (wrapping sharedstate.ErrUnavailable) means
// Redis could not answer: the caller denies.
//
// The session is checked first, then the agent window is checked and
// counted atomically on Redis, then the session is counted. When a
// concurrent call of the same session fills the session window in between,
// the call trips on the session and its agent count stays: the agent
// budget is then one call smaller, never larger.
func (s *Shared) Check(ctx context.Context, c Call, now time.Time) (Verdict, error) {
	if !Governed(c.ActionType) {
		return Verdict{}, nil
	}
	g := s.g
	k := g.keys(c)
	session := c.SessionID != "" && g.cfg.Session.any()
	if session {
		if v := g.checkSession(c, k, now, false); v.Tripped {
			return v, nil
		}
	}
	if g.cfg.Agent.any() {
		v, err := s.checkAgent(ctx, c, k)
		if err != nil || v.Tripped {
			return v, err
		}
	}
	if session {
		return g.checkSession(c, k, now, true), nil
	}
	return Verdict{}, nil
}

// checkSession checks c against its session window and, when count is set
// and no cap trips, counts it.
func (g *Guard) checkSession(c Call, k callKeys, now time.Time, count bool) Verdict {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prune(now)
	t := g.tracker("session|"+c.SessionID, now)
	if v := t.check(g.cfg.Session, k, now, g.cfg.Window); v.Tripped {
		v.Scope = ScopeSession
		return v
	}
	if count {
		t.add(k)
	}
	return Verdict{}
}

// agentScript checks one agent window and counts the call only when no cap
// would be exceeded, atomically. KEYS: counters hash, tools set, identical
// hash. ARGV: calls, write_calls, distinct_tools, identical_calls caps, write
// (0/1), tool, identical key, window ms, max keys per window. It answers
// {tripped limit (0 = none), ms left in the window, calls, writes, tools,
// identical} with the counts before this call.
var agentScript = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
  ttl = tonumber(ARGV[8])
end
local calls = tonumber(redis.call('HGET', KEYS[1], 'calls')) or 0
local writes = tonumber(redis.call('HGET', KEYS[1], 'writes')) or 0
local tools = redis.call('SCARD', KEYS[2])
local known = redis.call('SISMEMBER', KEYS[2], ARGV[6])
local same = tonumber(redis.call('HGET', KEYS[3], ARGV[7])) or 0
local maxCalls, maxWrites, maxTools, maxSame = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local write = ARGV[5] == '1'
local keys = tonumber(ARGV[9])
local limit = 0
if maxCalls > 0 and calls + 1 > maxCalls then limit = 1
elseif write and maxWrites > 0 and writes + 1 > maxWrites then limit = 2
elseif maxTools > 0 and known == 0 and (tools + 1 > maxTools or tools >= keys) then limit = 3
elseif maxSame > 0 and (same + 1 > maxSame or (same == 0 and redis.call('HLEN', KEYS[3]) >= keys)) then limit = 4
end
if limit == 0 then
  redis.call('HINCRBY', KEYS[1], 'calls', 1)
  if write then redis.call('HINCRBY', KEYS[1], 'writes', 1) end
  if tools < keys then redis.call('SADD', KEYS[2], ARGV[6]) end
  if same > 0 or redis.call('HLEN', KEYS[3]) < keys then redis.call('HINCRBY', KEYS[3], ARGV[7], 1) end
  for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
return {limit, ttl, calls, writes, tools, same}
`)

var agentLimits = [...]string{LimitCalls, LimitWriteCalls, LimitDistinctTools, LimitIdenticalCalls}

func (s *Shared) checkAgent(ctx context.Context, c Call, k callKeys) (Verdict, error) {
	l := s.g.cfg.Agent
	sum := sha256.Sum256(fmt.Appendf(nil, "%d:%s|%s", len(c.Principal), c.Principal, c.Agent))
	id := "{" + hex.EncodeToString(sum[:16]) + "}"
	keys := []string{s.c.Key("loop", "agent", id, "n"), s.c.Key("loop", "agent", id, "t"), s.c.Key("loop", "agent", id, "i")}
	write := 0
	if k.write {
		write = 1
	}
	var res []int64
	err := s.c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		var err error
		res, err = agentScript.Run(ctx, r, keys, l.Calls, l.WriteCalls, l.DistinctTools, l.IdenticalCalls,
			write, k.tool, k.identical, s.g.cfg.Window.Milliseconds(), maxKeysPerWindow).Int64Slice()
		return err
	})
	if err != nil {
		return Verdict{}, err
	}
	if len(res) != 6 || res[0] < 0 || res[0] > int64(len(agentLimits)) {
		return Verdict{}, fmt.Errorf("%w: loop-breaker script answered %v", sharedstate.ErrUnavailable, res)
	}
	if res[0] == 0 {
		return Verdict{}, nil
	}
	limit := agentLimits[res[0]-1]
	most := map[string]int{LimitCalls: l.Calls, LimitWriteCalls: l.WriteCalls, LimitDistinctTools: l.DistinctTools, LimitIdenticalCalls: l.IdenticalCalls}
	used := map[string]int{LimitCalls: int(res[2]), LimitWriteCalls: int(res[3]), LimitDistinctTools: int(res[4]), LimitIdenticalCalls: int(res[5])}
	budget := map[string]int{}
	for name, m := range most {
		if m > 0 {
			budget[name] = max(0, m-used[name])
		}
	}
	return Verdict{Tripped: true, Scope: ScopeAgent, Limit: limit, Max: most[limit],
		RetryAfter: time.Duration(res[1]) * time.Millisecond, Budget: budget}, nil
}
