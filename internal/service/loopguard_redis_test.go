package service

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/loopguard"
	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
	"github.com/caddy-nomos/nomos/policy"
)

// With the agent windows on Redis, two replicas trip the agent together,
// and with Redis down the loop breakers deny as state_unavailable instead
// of counting on local state.
func TestSharedLoopGuard(t *testing.T) {
	srv := redistest.Start(t)
	replica := func() *fixture {
		c, err := sharedstate.Open(sharedstate.Config{Address: srv.Addr, KeyPrefix: "test:" + t.Name() + ":", FailureThreshold: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		g, err := loopguard.New(loopguard.Config{Window: time.Hour, Agent: loopguard.Limits{Calls: 3}})
		if err != nil {
			t.Fatal(err)
		}
		return newFixtureWith(t, false, func(cfg *Config) { cfg.LoopGuard, cfg.SharedLoopGuard = g, loopguard.NewShared(g, c) })
	}
	one, two := replica(), replica()
	ctx := context.Background()
	var d *Response
	for i, f := range []*fixture{one, two, one, two} {
		var err error
		d, err = f.svc.Process(ctx, body(fmt.Sprint("r", i), "fs.read", "file://workspace/a", nil, ""), alice)
		if err != nil {
			t.Fatal(err)
		}
		if tripped := d.Decision == policy.Deny && strings.HasPrefix(d.Reason, ReasonLoopBreakerTripped); tripped != (i == 3) {
			t.Fatalf("call %d on two replicas with an agent cap of 3: %+v", i, d)
		}
	}
	srv.Stop()
	d, err := one.svc.Process(ctx, body("r9", "fs.read", "file://workspace/a", nil, ""), alice)
	if err != nil || d.Decision != policy.Deny || d.Reason != ReasonStateUnavailable {
		t.Fatalf("redis down: %+v %v", d, err)
	}
	if ev := one.rec.last(audit.EventActionCompleted); ev == nil || ev.ResultClassification != audit.ResultStateUnavailable || !ev.Retryable {
		t.Fatalf("outcome not audited as STATE_UNAVAILABLE: %+v", ev)
	}
}
