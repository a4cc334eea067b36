package approvals

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
)

// redisRetention keeps a decided or expired record readable (for lists,
// the UI and audits of late retries) this long after it expires.
const redisRetention = 7 * 24 * time.Hour

// redisStore keeps approvals on the shared Redis, so every replica sees
// the same records. Each read-check-write runs as an optimistic
// transaction (WATCH, then MULTI/EXEC) around the same rules the sqlite
// store applies, so single use, expiry and decisions hold across replicas.
type redisStore struct {
	c *sharedstate.Client
}

// OpenRedis returns a store on the shared state client.
func OpenRedis(c *sharedstate.Client) Store { return &redisStore{c: c} }

func (s *redisStore) recKey(id string) string { return s.c.Key("approval", id) }
func (s *redisStore) indexKey() string        { return s.c.Key("approvals", "by_created") }

// pendingKey names the one pending record a request may reuse.
func (s *redisStore) pendingKey(req Request) string {
	sum := sha256.Sum256([]byte(req.ScopeType + "\x00" + req.ScopeKey + "\x00" + req.Principal + "\x00" + req.Agent + "\x00" + req.Environment))
	return s.c.Key("approvals", "pending", hex.EncodeToString(sum[:]))
}

const maxTxRetries = 16

// update runs fn in an optimistic transaction watching keys, retrying when
// another replica wrote them first.
func (s *redisStore) update(ctx context.Context, keys []string, fn func(*redis.Tx) error) error {
	return s.c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		for i := 0; i < maxTxRetries; i++ {
			err := r.Watch(ctx, fn, keys...)
			if !errors.Is(err, redis.TxFailedErr) {
				return err
			}
		}
		return fmt.Errorf("approvals: too much contention on %v", keys)
	})
}

func (s *redisStore) CreateOrGetPending(ctx context.Context, req Request, ttl time.Duration, now time.Time) (Record, bool, error) {
	if err := validateRequest(req, ttl); err != nil {
		return Record{}, false, err
	}
	var rec Record
	var created bool
	pk := s.pendingKey(req)
	err := s.update(ctx, []string{pk}, func(tx *redis.Tx) error {
		created = false
		if id, err := tx.Get(ctx, pk).Result(); err == nil {
			if cur, err := s.read(ctx, tx, id); err == nil && reusable(cur, req, now) {
				rec = cur
				return nil
			}
		} else if !errors.Is(err, redis.Nil) {
			return err
		}
		rec, created = newRecord(req, ttl, now), true
		_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			s.write(ctx, p, rec, now)
			p.Set(ctx, pk, rec.ID, rec.ExpiresAt.Sub(now)+time.Second)
			p.ZAdd(ctx, s.indexKey(), redis.Z{Score: float64(rec.CreatedAt.UnixNano()), Member: rec.ID})
			return nil
		})
		return err
	})
	if err != nil {
		return Record{}, false, wrapRedis("create", err)
	}
	return rec, created, nil
}

func (s *redisStore) write(ctx context.Context, p redis.Pipeliner, rec Record, now time.Time) {
	data, _ := json.Marshal(rec) // a Record always marshals
	p.Set(ctx, s.recKey(rec.ID), data, max(rec.ExpiresAt.Sub(now), 0)+redisRetention)
}

func (s *redisStore) read(ctx context.Context, r redis.Cmdable, id string) (Record, error) {
	data, err := r.Get(ctx, s.recKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Record{}, notFound(id)
	}
	if err != nil {
		return Record{}, err
	}
	var rec Record
	if err := json.Unmarshal(data, &rec); err != nil {
		return Record{}, fmt.Errorf("approvals: decode %s: %w", id, err)
	}
	return rec, nil
}

func (s *redisStore) Get(ctx context.Context, id string) (Record, error) {
	var rec Record
	err := s.c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		var err error
		rec, err = s.read(ctx, r, id)
		if errors.Is(err, ErrNotFound) {
			return sharedstate.Answer(err)
		}
		return err
	})
	return rec, wrapRedis("get", err)
}

// modify applies a rule to one record atomically.
func (s *redisStore) modify(ctx context.Context, id, step string, now time.Time, rule func(*Record) (bool, error)) (Record, error) {
	var rec Record
	var ruleErr error
	err := s.update(ctx, []string{s.recKey(id)}, func(tx *redis.Tx) error {
		var err error
		if rec, err = s.read(ctx, tx, id); err != nil {
			if errors.Is(err, ErrNotFound) {
				ruleErr = err
				return nil
			}
			return err
		}
		changed, err := rule(&rec)
		if err != nil || !changed {
			ruleErr = err
			return nil
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error { s.write(ctx, p, rec, now); return nil })
		return err
	})
	if err != nil {
		return Record{}, wrapRedis(step, err)
	}
	if ruleErr != nil {
		return Record{}, ruleErr
	}
	return rec, nil
}

func (s *redisStore) Decide(ctx context.Context, id, decision, approver string, now time.Time) (Record, error) {
	return s.modify(ctx, id, "decide", now, func(r *Record) (bool, error) { return decide(r, decision, approver, now) })
}

func (s *redisStore) Use(ctx context.Context, id, scopeKey, principal, agent, environment string, now time.Time) (Record, error) {
	return s.modify(ctx, id, "use", now, func(r *Record) (bool, error) {
		return use(r, scopeKey, principal, agent, environment, now)
	})
}

// List reads the newest records first; records past their retention drop
// out of the index as they are met.
func (s *redisStore) List(ctx context.Context, f Filter) ([]Record, error) {
	if err := validateFilter(f); err != nil {
		return nil, err
	}
	var out []Record
	err := s.c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		out = nil
		return s.scan(ctx, r, f, &out)
	})
	return out, wrapRedis("list", err)
}

const listPage = 200

func (s *redisStore) scan(ctx context.Context, r redis.UniversalClient, f Filter, out *[]Record) error {
	for start := int64(0); ; start += listPage {
		ids, err := r.ZRevRange(ctx, s.indexKey(), start, start+listPage-1).Result()
		if err != nil || len(ids) == 0 {
			return err
		}
		for _, id := range ids {
			rec, err := s.read(ctx, r, id)
			if errors.Is(err, ErrNotFound) {
				r.ZRem(ctx, s.indexKey(), id)
				continue
			}
			if err != nil {
				return err
			}
			if f.Status == "" || rec.Status == f.Status {
				*out = append(*out, rec)
			}
			if f.Limit > 0 && len(*out) >= f.Limit {
				return nil
			}
		}
	}
}

func (s *redisStore) Close() error { return nil } // the shared client is closed by its owner

// wrapRedis keeps ErrUnavailable visible and prefixes the step.
func wrapRedis(step string, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) {
		return err
	}
	return fmt.Errorf("approvals: redis %s: %w", step, err)
}

// Interface guards
var _ Store = (*redisStore)(nil)
