package sharedstate

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Bucket is one token bucket to check: Burst tokens at most, refilled at
// RefillPerMinute; idle state expires after Evict.
type Bucket struct {
	Key             string
	Burst           float64
	RefillPerMinute float64
	Evict           time.Duration
}

// Verdict is the outcome of one Take over several buckets.
type Verdict struct {
	Allowed bool
	// Remaining is each bucket's tokens after the call, in order.
	Remaining []float64
	// RetryAfter is how long until every empty bucket has a token again.
	RetryAfter time.Duration
}

// takeScript checks every bucket and consumes one token from each only if
// all have one: all-or-nothing, atomic on the server, one round trip. Time
// is the server's, so replicas with skewed clocks share one timeline.
var takeScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local tokens = {}
local allowed = 1
local wait = 0
for i = 1, n do
  local burst = tonumber(ARGV[(i-1)*3 + 1])
  local rate = tonumber(ARGV[(i-1)*3 + 2]) / 60000
  local st = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tk = tonumber(st[1])
  local ts = tonumber(st[2])
  if tk == nil then tk = burst; ts = now end
  tk = math.min(burst, tk + math.max(0, now - ts) * rate)
  tokens[i] = tk
  if tk < 1 then
    allowed = 0
    local w = (rate > 0) and math.ceil((1 - tk) / rate) or -1
    if w < 0 or wait < 0 then wait = -1 elseif w > wait then wait = w end
  end
end
local out = {allowed, wait}
for i = 1, n do
  if allowed == 1 then
    tokens[i] = tokens[i] - 1
    redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i]), 'ts', now)
    redis.call('PEXPIRE', KEYS[i], ARGV[(i-1)*3 + 3])
  end
  out[#out + 1] = tostring(tokens[i])
end
return out
`)

// Take checks the buckets and, if every one has a token, consumes one from
// each.
func (c *Client) Take(ctx context.Context, buckets []Bucket) (Verdict, error) {
	if len(buckets) == 0 {
		return Verdict{Allowed: true}, nil
	}
	keys := make([]string, len(buckets))
	args := make([]any, 0, 3*len(buckets))
	for i, b := range buckets {
		keys[i] = c.Key("rl", b.Key)
		evict := max(b.Evict, time.Second)
		args = append(args, b.Burst, b.RefillPerMinute, evict.Milliseconds())
	}
	var res []any
	err := c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		var err error
		res, err = takeScript.Run(ctx, r, keys, args...).Slice()
		return err
	})
	if err != nil {
		return Verdict{}, err
	}
	return parseVerdict(res, len(buckets))
}

func parseVerdict(res []any, n int) (Verdict, error) {
	if len(res) != n+2 {
		return Verdict{}, fmt.Errorf("%w: rate-limit script answered %d values for %d buckets", ErrUnavailable, len(res), n)
	}
	allowed, _ := res[0].(int64)
	wait, _ := res[1].(int64)
	v := Verdict{Allowed: allowed == 1, RetryAfter: time.Duration(wait) * time.Millisecond}
	if wait < 0 {
		v.RetryAfter = -1 // a bucket that never refills
	}
	for _, x := range res[2:] {
		s, _ := x.(string)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return Verdict{}, fmt.Errorf("%w: rate-limit script answered %v", ErrUnavailable, x)
		}
		v.Remaining = append(v.Remaining, f)
	}
	return v, nil
}
