package mcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
)

// redisRegistry keeps session bindings and per-principal session sets on
// the shared Redis. A binding is a hash (principal, owner URL, the key of
// the principal's set); a principal's set is a sorted set of its session
// ids scored by expiry, so the cap counts only live sessions and both
// expire on their own when replicas die.
type redisRegistry struct {
	c     *sharedstate.Client
	scope string // the route, so caps are per route as on one replica
	self  string // this replica's advertised URL
}

// NewRedisRegistry returns the registry of one route (scope names it the
// same way on every replica); self is the URL other replicas forward this
// replica's sessions to ("" when it advertises none).
func NewRedisRegistry(c *sharedstate.Client, scope, self string) SessionRegistry {
	return &redisRegistry{c: c, scope: scope, self: self}
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

func (x *redisRegistry) bindingKey(sid string) string { return x.c.Key("mcp", "session", digest(sid)) }

func (x *redisRegistry) setKey(principal string) string {
	return x.c.Key("mcp", "sessions", digest(x.scope), digest(principal))
}

// admitScript drops expired members, checks the cap and binds the session,
// atomically on server time.
var admitScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('HSET', KEYS[2], 'principal', ARGV[4], 'owner', ARGV[5], 'set', KEYS[1])
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
`)

func (x *redisRegistry) Admit(ctx context.Context, sid, principal string, limit int, ttl time.Duration) (bool, error) {
	var ok bool
	err := x.c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		n, err := admitScript.Run(ctx, r, []string{x.setKey(principal), x.bindingKey(sid)},
			digest(sid), limit, ttl.Milliseconds(), principal, x.self).Int()
		ok = n == 1
		return err
	})
	return ok, err
}

var touchScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return 1
`)

func (x *redisRegistry) Touch(ctx context.Context, sid, principal string, ttl time.Duration) error {
	return x.c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		return touchScript.Run(ctx, r, []string{x.setKey(principal), x.bindingKey(sid)}, digest(sid), ttl.Milliseconds()).Err()
	})
}

func (x *redisRegistry) Owner(ctx context.Context, sid string) (string, error) {
	var owner string
	err := x.c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		var err error
		owner, err = r.HGet(ctx, x.bindingKey(sid), "owner").Result()
		if errors.Is(err, redis.Nil) {
			owner = ""
			return nil
		}
		return err
	})
	if owner == x.self {
		owner = "" // ours, and not held: gone with a restart
	}
	return owner, err
}

// releaseScript drops the binding and its member of the principal's set
// (named in the binding, so a replica that knows only the id can release
// it).
var releaseScript = redis.NewScript(`
local set = redis.call('HGET', KEYS[1], 'set')
if set then redis.call('ZREM', set, ARGV[1]) end
redis.call('DEL', KEYS[1])
return 1
`)

func (x *redisRegistry) Release(ctx context.Context, sid string) error {
	return x.c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		return releaseScript.Run(ctx, r, []string{x.bindingKey(sid)}, digest(sid)).Err()
	})
}

// Interface guards
var _ SessionRegistry = (*redisRegistry)(nil)
