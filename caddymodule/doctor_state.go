package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
)

// stateProbeTimeout bounds the doctor's ping of the shared state.
const stateProbeTimeout = 5 * time.Second

// checkState pings the shared Redis and reports its breaker: with shared
// state configured, a replica that cannot reach it denies every decision
// that needs it.
func (in *doctorInput) checkState(ctx context.Context) []doctorCheck {
	c := doctorCheck{ID: "state.redis"}
	if in.app.State == nil {
		return []doctorCheck{c.pass("no shared state: approvals, nonces, report index and MCP sessions are local to this process")}
	}
	client, closeClient, err := in.sharedClient()
	if err != nil {
		return []doctorCheck{c.fail(err.Error(), "fix the state { redis { } } block")}
	}
	defer closeClient()
	ctx, cancel := context.WithTimeout(ctx, stateProbeTimeout)
	defer cancel()
	err = client.Ping(ctx)
	h := client.Health()
	evidence := []string{"breaker " + h.Breaker}
	if err != nil {
		return []doctorCheck{c.fail(fmt.Sprintf("redis does not answer: %v", err),
			"start Redis or fix address, password and tls; until then decisions that need it are denied as state_unavailable", evidence...)}
	}
	if h.Breaker != "closed" {
		return []doctorCheck{c.warn("redis answers but the breaker is "+h.Breaker+" after recent failures", "watch nomos_state_breaker_state", evidence...)}
	}
	return []doctorCheck{c.pass("redis answers", evidence...)}
}

// sharedClient is the running app's client (live) or a new one for this
// check.
func (in *doctorInput) sharedClient() (*sharedstate.Client, func(), error) {
	if in.live != nil && in.live.shared != nil {
		return in.live.shared, func() {}, nil
	}
	if in.app.State == nil {
		return nil, nil, errors.New("store redis needs state redis")
	}
	cfg, err := in.app.stateConfig()
	if err != nil {
		return nil, nil, err
	}
	c, err := sharedstate.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	return c, func() { _ = c.Close() }, nil
}
