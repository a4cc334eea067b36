package pins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
)

// redisStore keeps each upstream's pins in one hash on the shared Redis
// (field = tool, value = the Pin as JSON), updated in optimistic
// transactions so replicas observing the same listing agree.
type redisStore struct{ c *sharedstate.Client }

// OpenRedis returns a pin store on the shared state client.
func OpenRedis(c *sharedstate.Client) Store { return &redisStore{c: c} }

func (s *redisStore) key(upstream string) string { return s.c.Key("pins", upstream) }
func (s *redisStore) upstreamsKey() string       { return s.c.Key("pins", "upstreams") }

func (s *redisStore) Update(ctx context.Context, upstream string, fn func(map[string]Pin) ([]Pin, error)) error {
	key := s.key(upstream)
	var fnErr error
	err := s.c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		for i := 0; i < 16; i++ {
			err := r.Watch(ctx, func(tx *redis.Tx) error {
				pins, err := decodeHash(tx.HGetAll(ctx, key).Val())
				if err != nil {
					fnErr = err
					return nil
				}
				writes, err := fn(pins)
				if err != nil || len(writes) == 0 {
					fnErr = err
					return nil
				}
				_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
					for _, pin := range writes {
						data, _ := json.Marshal(pin) // a Pin always marshals
						p.HSet(ctx, key, pin.Tool, data)
					}
					p.SAdd(ctx, s.upstreamsKey(), upstream)
					return nil
				})
				return err
			}, key)
			if !errors.Is(err, redis.TxFailedErr) {
				return err
			}
		}
		return fmt.Errorf("pins: too much contention on %s", upstream)
	})
	if err != nil {
		return fmt.Errorf("pins: redis update %s: %w", upstream, err)
	}
	return fnErr
}

func decodeHash(h map[string]string) (map[string]Pin, error) {
	out := make(map[string]Pin, len(h))
	for tool, data := range h {
		var p Pin
		if err := json.Unmarshal([]byte(data), &p); err != nil {
			return nil, fmt.Errorf("pins: decode stored pin %s: %w", tool, err)
		}
		out[tool] = p
	}
	return out, nil
}

func (s *redisStore) List(ctx context.Context, upstream string) ([]Pin, error) {
	var out []Pin
	err := s.c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		ups := []string{upstream}
		if upstream == "" {
			var err error
			if ups, err = r.SMembers(ctx, s.upstreamsKey()).Result(); err != nil {
				return err
			}
		}
		out = nil
		for _, u := range ups {
			h, err := r.HGetAll(ctx, s.key(u)).Result()
			if err != nil {
				return err
			}
			pins, err := decodeHash(h)
			if err != nil {
				return sharedstate.Answer(err)
			}
			for _, p := range pins {
				out = append(out, p)
			}
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Upstream != out[j].Upstream {
			return out[i].Upstream < out[j].Upstream
		}
		return out[i].Tool < out[j].Tool
	})
	return out, err
}

func (s *redisStore) Close() error { return nil } // the shared client is closed by its owner

// Interface guards
var _ Store = (*redisStore)(nil)
