package service

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
)

// redisReportIndex keeps the authorized-action index on the shared Redis:
// one key per (principal, trace, action) that expires with the report
// window, so Redis bounds it in time and nothing needs sweeping.
type redisReportIndex struct {
	c      *sharedstate.Client
	window time.Duration
}

// NewRedisReportIndex returns the shared index; window 0 means
// DefaultReportWindow.
func NewRedisReportIndex(c *sharedstate.Client, window time.Duration) ReportIndex {
	if window <= 0 {
		window = DefaultReportWindow
	}
	return &redisReportIndex{c: c, window: window}
}

// key hashes the triple, so ids of any shape make a fixed-size key and
// the principal does not appear in Redis in clear.
func (x *redisReportIndex) key(principal, traceID, actionID string) string {
	sum := sha256.Sum256([]byte(principal + "\x00" + traceID + "\x00" + actionID))
	return x.c.Key("authorized", hex.EncodeToString(sum[:]))
}

func (x *redisReportIndex) Add(ctx context.Context, principal, traceID, actionID string, _ time.Time) error {
	return x.c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		return r.Set(ctx, x.key(principal, traceID, actionID), 1, x.window).Err()
	})
}

func (x *redisReportIndex) Reportable(ctx context.Context, principal, traceID, actionID string, _ time.Time) (bool, error) {
	var found bool
	err := x.c.Do(ctx, func(ctx context.Context, r redis.UniversalClient) error {
		err := r.Get(ctx, x.key(principal, traceID, actionID)).Err()
		found = err == nil
		if errors.Is(err, redis.Nil) {
			return nil
		}
		return err
	})
	return found, err
}

// Interface guards
var _ ReportIndex = (*redisReportIndex)(nil)
