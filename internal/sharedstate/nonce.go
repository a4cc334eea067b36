package sharedstate

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// SeenOnce records key for ttl and reports whether it was already there:
// the replay check of signature nonces, shared by every replica. The
// check and the write are one SET NX, so two replicas racing on the same
// nonce cannot both see it as new.
func (c *Client) SeenOnce(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	var seen bool
	err := c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		err := r.SetArgs(ctx, c.Key("nonce", key), 1, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
		if errors.Is(err, redis.Nil) {
			seen = true
			return nil
		}
		return err
	})
	return seen, err
}
