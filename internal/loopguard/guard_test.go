package loopguard

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/policy/action"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func call(session, tool, args string) Call {
	return Call{SessionID: session, Principal: "alice", Agent: "a1", ActionType: action.TypeMCPCall,
		Resource: "mcp://shop/" + tool, ParamsHash: args}
}

func mustGuard(t *testing.T, cfg Config) *Guard {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestEachLimitTrips(t *testing.T) {
	cases := []struct {
		name   string
		cfg    Config
		calls  []Call
		limit  string
		scope  string
		budget map[string]int
	}{
		{"identical calls per session", Config{Session: Limits{IdenticalCalls: 2}},
			[]Call{call("s1", "get", "h1"), call("s1", "get", "h2"), call("s1", "get", "h1"), call("s1", "get", "h1")},
			LimitIdenticalCalls, ScopeSession, map[string]int{LimitIdenticalCalls: 0}},
		{"calls per session", Config{Session: Limits{Calls: 3}},
			[]Call{call("s1", "a", "1"), call("s1", "b", "2"), call("s1", "c", "3"), call("s1", "d", "4")},
			LimitCalls, ScopeSession, map[string]int{LimitCalls: 0}},
		{"distinct tools per agent across sessions", Config{Agent: Limits{DistinctTools: 2, Calls: 10}},
			[]Call{call("s1", "a", "1"), call("s2", "b", "1"), call("s2", "a", "2"), call("s3", "c", "1")},
			LimitDistinctTools, ScopeAgent, map[string]int{LimitDistinctTools: 0, LimitCalls: 7}},
		{"write calls per agent", Config{Agent: Limits{WriteCalls: 1}, ReadOnly: []string{"mcp://shop/get_*"}},
			[]Call{call("s1", "get_order", "1"), call("s1", "get_order", "2"), call("s1", "refund", "1"), call("s1", "refund", "2")},
			LimitWriteCalls, ScopeAgent, map[string]int{LimitWriteCalls: 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := mustGuard(t, c.cfg)
			last := len(c.calls) - 1
			for i, cl := range c.calls[:last] {
				if v := g.Check(cl, t0.Add(time.Duration(i)*time.Second)); v.Tripped {
					t.Fatalf("call %d tripped early: %+v", i, v)
				}
			}
			v := g.Check(c.calls[last], t0.Add(10*time.Second))
			if !v.Tripped || v.Limit != c.limit || v.Scope != c.scope {
				t.Fatalf("got %+v, want %s/%s", v, c.scope, c.limit)
			}
			if v.RetryAfter != 50*time.Second {
				t.Fatalf("retry after %v, want the rest of the 1m window (50s)", v.RetryAfter)
			}
			if fmt.Sprint(v.Budget) != fmt.Sprint(c.budget) {
				t.Fatalf("budget %v, want %v", v.Budget, c.budget)
			}
			if v := g.Check(c.calls[last], t0.Add(time.Minute)); v.Tripped {
				t.Fatalf("a new window did not reset the caps: %+v", v)
			}
		})
	}
}

// TestTrippedCallsAreNotCounted: a refused call uses no budget, in any
// scope, so a session that trips does not also drain its agent.
func TestTrippedCallsAreNotCounted(t *testing.T) {
	g := mustGuard(t, Config{Session: Limits{IdenticalCalls: 1}, Agent: Limits{Calls: 3}})
	if g.Check(call("s1", "x", "1"), t0).Tripped {
		t.Fatal("first call tripped")
	}
	for i := 0; i < 10; i++ {
		if v := g.Check(call("s1", "x", "1"), t0); !v.Tripped || v.Scope != ScopeSession {
			t.Fatalf("repeat %d: %+v", i, v)
		}
	}
	for i := 0; i < 2; i++ {
		if v := g.Check(call("s2", "x", fmt.Sprint(i)), t0); v.Tripped {
			t.Fatalf("agent budget was drained by refused calls: %+v", v)
		}
	}
	if v := g.Check(call("s3", "y", "1"), t0); !v.Tripped || v.Scope != ScopeAgent || v.Limit != LimitCalls {
		t.Fatalf("agent cap: %+v", v)
	}
}

func TestNoSessionMeansAgentCapsOnly(t *testing.T) {
	g := mustGuard(t, Config{Session: Limits{Calls: 1}, Agent: Limits{Calls: 2}})
	c := Call{Principal: "alice", Agent: "a1", ActionType: "fs.read", Resource: "file://workspace/a", ParamsHash: "h"}
	if g.Check(c, t0).Tripped || g.Check(c, t0).Tripped {
		t.Fatal("session caps applied to a call without a session")
	}
	if v := g.Check(c, t0); !v.Tripped || v.Scope != ScopeAgent {
		t.Fatalf("agent cap: %+v", v)
	}
	other := c
	other.Agent = "a2"
	if g.Check(other, t0).Tripped {
		t.Fatal("agents share a tracker")
	}
}

func TestUpstreamInitiatedRequestsAreNotCounted(t *testing.T) {
	g := mustGuard(t, Config{Session: Limits{Calls: 1}})
	for i := 0; i < 3; i++ {
		if g.Check(Call{SessionID: "s", ActionType: action.TypeMCPSample, Resource: "mcp://x/sample"}, t0).Tripped {
			t.Fatal("sampling request counted")
		}
	}
}

func TestBuiltinWriteClass(t *testing.T) {
	g := mustGuard(t, Config{Agent: Limits{WriteCalls: 1}})
	w := Call{Principal: "p", Agent: "a", ActionType: "fs.write", Resource: "file://workspace/a", RiskFlags: []string{action.RiskWrite}}
	r := Call{Principal: "p", Agent: "a", ActionType: "fs.read", Resource: "file://workspace/a"}
	if g.Check(w, t0).Tripped || g.Check(r, t0).Tripped || g.Check(r, t0).Tripped {
		t.Fatal("reads counted as writes")
	}
	if v := g.Check(w, t0); !v.Tripped || v.Limit != LimitWriteCalls {
		t.Fatalf("second write: %+v", v)
	}
}

func TestTrackedStateIsBounded(t *testing.T) {
	g := mustGuard(t, Config{Session: Limits{Calls: 5}, MaxTracked: 20})
	for i := 0; i < 500; i++ {
		g.Check(call(fmt.Sprint("s", i), "x", "1"), t0)
	}
	if n := g.trackers.Len(); n != 20 {
		t.Fatalf("tracking %d, want the bound 20", n)
	}
	g.Check(call("late", "x", "1"), t0.Add(2*time.Minute))
	if n := g.trackers.Len(); n > 2 {
		t.Fatalf("idle trackers not pruned: %d", n)
	}
}

func TestConfigErrors(t *testing.T) {
	for want, cfg := range map[string]Config{
		"at least one":      {},
		"must not be":       {Session: Limits{Calls: -1, WriteCalls: 1}},
		"read_only \"a\\\\": {Agent: Limits{Calls: 1}, ReadOnly: []string{"a\\b"}},
	} {
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), strings.ReplaceAll(want, `\\`, `\`)) {
			t.Errorf("%q: %v", want, err)
		}
	}
}
