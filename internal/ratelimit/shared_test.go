package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
)

// Two replicas sharing the rules' buckets allow each limit once; a denial
// names the empty bucket as Rules.Check would; no answer is an error.
func TestSharedRulesAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	rules, err := NewRules(RulesConfig{Rules: []Rule{
		{ID: "per-action", Scope: ScopePrincipalAction, ActionType: "orders.read", Burst: 3, RefillPerMinute: 0.01},
		{ID: "global", Scope: ScopeGlobalTool, ActionType: "orders.read", Burst: 100, RefillPerMinute: 0.01},
	}, EvictAfter: 24 * 365 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	replica := func() *Shared {
		c, err := sharedstate.Open(sharedstate.Config{Address: srv.Addr, KeyPrefix: "test:" + t.Name() + ":", FailureThreshold: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return NewShared(rules, c)
	}
	one, two := replica(), replica()
	ctx := context.Background()
	a := Action{Principal: "alice", ActionType: "orders.read", Resource: "shop://orders/1"}
	allowed := 0
	var last Verdict
	for i := 0; i < 8; i++ {
		v, err := []*Shared{one, two}[i%2].Check(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if v.Allowed {
			allowed++
		}
		last = v
	}
	if allowed != 3 {
		t.Fatalf("allowed %d across two replicas with a shared burst of 3", allowed)
	}
	if last.Denied == nil || last.Denied.RuleID != "per-action" || last.Denied.Remaining != 0 || last.RetryAfter <= 0 || len(last.Hits) != 2 {
		t.Fatalf("denial: %+v", last)
	}
	if v, _ := one.Check(ctx, Action{Principal: "bob", ActionType: "orders.read"}); !v.Allowed || v.Hits[0].RuleID != "global" || v.Hits[0].Remaining != 96 {
		t.Fatalf("bob's bucket or the global one: %+v", v)
	}
	if v, err := one.Check(ctx, Action{Principal: "alice", ActionType: "orders.write"}); !v.Allowed || err != nil {
		t.Fatalf("no matching rule: %+v %v", v, err)
	}
	srv.Stop()
	if _, err := two.Check(ctx, a); !errors.Is(err, sharedstate.ErrUnavailable) {
		t.Fatalf("redis down: %v", err)
	}
}
