package mcp

import (
	"context"
	"time"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
)

// InitPacer paces initialize per principal for every replica of a route
// together.
type InitPacer interface {
	// Allow takes one initialize from principal's bucket of perMinute
	// (refilled over a minute), or reports false when it is empty. An
	// error means the shared state could not answer.
	Allow(ctx context.Context, principal string, perMinute int) (bool, error)
}

// redisPacer keeps the initialize buckets on Redis (sharedstate.Take).
type redisPacer struct {
	c     *sharedstate.Client
	scope string
}

// NewRedisInitPacer returns the initialize pacing of one route (scope
// names it the same on every replica) on c.
func NewRedisInitPacer(c *sharedstate.Client, scope string) InitPacer {
	return &redisPacer{c: c, scope: digest(scope)}
}

func (p *redisPacer) Allow(ctx context.Context, principal string, perMinute int) (bool, error) {
	v, err := p.c.Take(ctx, []sharedstate.Bucket{{Key: "mcp_initialize:" + p.scope + ":" + digest(principal),
		Burst: float64(perMinute), RefillPerMinute: float64(perMinute), Evict: time.Minute + time.Second}})
	return v.Allowed, err
}
