package loopguard

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
	"github.com/caddy-nomos/nomos/policy/action"
)

func sharedReplica(t *testing.T, addr string, cfg Config) (*Shared, *sharedstate.Client) {
	t.Helper()
	c, err := sharedstate.Open(sharedstate.Config{Address: addr, KeyPrefix: "test:" + t.Name() + ":", FailureThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return NewShared(mustGuard(t, cfg), c), c
}

// Two replicas on one Redis together give an agent each budget once, and
// every verdict, counted or refused, is the one a single in-memory Guard
// gives for the same calls. Each session stays on one replica, as an MCP
// session does.
func TestSharedAgentBudgetAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Window: time.Hour, ReadOnly: []string{"mcp://shop/get_*"},
		Session: Limits{IdenticalCalls: 3, Calls: 12},
		Agent:   Limits{Calls: 20, WriteCalls: 10, DistinctTools: 4, IdenticalCalls: 5}}
	one, _ := sharedReplica(t, srv.Addr, cfg)
	two, _ := sharedReplica(t, srv.Addr, cfg)
	ref := mustGuard(t, cfg)
	tools := []string{"get_order", "get_user", "refund", "ship", "cancel"}
	rng := rand.New(rand.NewPCG(1, 2))
	ctx := context.Background()
	counted, tripped := 0, map[string]int{}
	for i := range 150 {
		session := fmt.Sprintf("s%d", rng.IntN(6))
		c := call(session, tools[rng.IntN(len(tools))], fmt.Sprint(rng.IntN(3)))
		c.Agent = []string{"a1", "a2"}[rng.IntN(2)]
		replica := one
		if session[1]%2 == 1 {
			replica = two
		}
		got, err := replica.Check(ctx, c, t0)
		if err != nil {
			t.Fatal(err)
		}
		want := ref.Check(c, t0)
		got.RetryAfter, want.RetryAfter = 0, 0
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("call %d %+v: shared %+v, in memory %+v", i, c, got, want)
		}
		if got.Tripped {
			tripped[got.Scope+"/"+got.Limit]++
		} else {
			counted++
		}
	}
	for _, want := range []string{"agent/calls", "agent/write_calls", "agent/distinct_tools", "session/identical_calls"} {
		if tripped[want] == 0 {
			t.Errorf("the sequence never tripped %s: %v", want, tripped)
		}
	}
	if counted > 2*cfg.Agent.Calls {
		t.Fatalf("%d calls counted for two agents capped at %d each", counted, cfg.Agent.Calls)
	}

	// A tripped agent window says how long it has left on the server.
	v, err := two.Check(ctx, call("s9", "get_order", "9"), t0)
	if err != nil || !v.Tripped || v.Scope != ScopeAgent || v.RetryAfter <= 0 || v.RetryAfter > time.Hour {
		t.Fatalf("tripped agent: %+v %v", v, err)
	}

	srv.Stop()
	if _, err := one.Check(ctx, call("", "get_order", "1"), t0); !errors.Is(err, sharedstate.ErrUnavailable) {
		t.Fatalf("redis down: %v", err)
	}
	if v, err := one.Check(ctx, Call{Principal: "alice", Agent: "a1", ActionType: action.TypeMCPSample}, t0); err != nil || v.Tripped {
		t.Fatalf("sampling is not governed, even with redis down: %+v %v", v, err)
	}
}

// The agent window is fixed: it starts with its first counted call and
// ends Window later on the server's clock, whoever counts in it.
func TestSharedAgentWindowStartsAgain(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Window: 300 * time.Millisecond, Agent: Limits{Calls: 2}}
	one, c := sharedReplica(t, srv.Addr, cfg)
	two, _ := sharedReplica(t, srv.Addr, cfg)
	ctx := context.Background()
	for i, r := range []*Shared{one, two} {
		if v, err := r.Check(ctx, call("", "get", fmt.Sprint(i)), t0); err != nil || v.Tripped {
			t.Fatalf("call %d: %+v %v", i, v, err)
		}
	}
	v, err := one.Check(ctx, call("", "get", "3"), t0)
	if err != nil || !v.Tripped || v.Limit != LimitCalls || v.RetryAfter > cfg.Window {
		t.Fatalf("third call: %+v %v", v, err)
	}
	keys, err := c.Redis().Keys(ctx, c.Key("loop", "*")).Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %v %v", keys, err)
	}
	for _, k := range keys {
		if ttl := c.Redis().PTTL(ctx, k).Val(); ttl <= 0 || ttl > cfg.Window {
			t.Fatalf("%s expires in %s, window %s", k, ttl, cfg.Window)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, err := two.Check(ctx, call("", "get", "4"), t0)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Tripped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent window never ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFullWindowNeverPassesUncounted: a window remembers a bounded number
// of distinct calls; once an agent has filled it with junk, a call it
// cannot count trips max_identical_calls instead of passing uncounted
// forever, in memory and on Redis alike.
func TestFullWindowNeverPassesUncounted(t *testing.T) {
	srv := redistest.Start(t)
	cfg := Config{Window: time.Hour, Agent: Limits{IdenticalCalls: 5}}
	shared, _ := sharedReplica(t, srv.Addr, cfg)
	mem := mustGuard(t, cfg)
	ctx := context.Background()
	check := map[string]func(Call) (Verdict, error){
		"memory": func(c Call) (Verdict, error) { return mem.Check(c, t0), nil },
		"redis":  func(c Call) (Verdict, error) { return shared.Check(ctx, c, t0) },
	}
	for name, do := range check {
		mk := func(p string) Call {
			return Call{Principal: "mallory-" + name, Agent: "a1", ActionType: action.TypeMCPCall, Resource: "mcp://bank/transfer", ParamsHash: p}
		}
		for i := range maxKeysPerWindow {
			if v, err := do(mk(fmt.Sprintf("junk-%d", i))); err != nil || v.Tripped {
				t.Fatalf("%s: junk %d: %+v %v", name, i, v, err)
			}
		}
		allowed := 0
		for range 50 {
			if v, err := do(mk("the-same-transfer")); err == nil && !v.Tripped {
				allowed++
			} else if err == nil && v.Limit != LimitIdenticalCalls {
				t.Fatalf("%s: tripped %s", name, v.Limit)
			}
		}
		if allowed > 5 {
			t.Fatalf("%s: max_identical_calls 5, and %d identical calls passed after a full window", name, allowed)
		}
	}
}
