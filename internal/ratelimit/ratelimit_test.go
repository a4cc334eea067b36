package ratelimit

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func mustNew(t *testing.T, cfg RulesConfig) *Rules {
	t.Helper()
	l, err := NewRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestBucketRefillsContinuously(t *testing.T) {
	l := mustNew(t, RulesConfig{Rules: []Rule{{ID: "r", Scope: ScopePrincipalAction, ActionType: "fs.read", Burst: 3, RefillPerMinute: 2}}})
	a := Action{Principal: "alice", ActionType: "fs.read", Resource: "file://workspace/a"}
	for i := 0; i < 3; i++ {
		if v := l.Check(a, t0); !v.Allowed || v.Hits[0].Remaining != int64(2-i) {
			t.Fatalf("call %d within burst: %+v", i, v)
		}
	}
	v := l.Check(a, t0)
	if v.Allowed || v.Denied == nil || v.Denied.RuleID != "r" || v.RetryAfter != 30*time.Second {
		t.Fatalf("past burst: %+v", v)
	}
	if v.Denied.BucketKey != "principal_action|r|5:alice|7:fs.read" {
		t.Fatalf("bucket key %q", v.Denied.BucketKey)
	}
	if l.Check(a, t0.Add(29*time.Second)).Allowed {
		t.Fatal("refilled before 30s (2 per minute)")
	}
	if !l.Check(a, t0.Add(30*time.Second)).Allowed {
		t.Fatal("no token after 30s")
	}
	if !l.Check(Action{Principal: "bob", ActionType: "fs.read"}, t0).Allowed {
		t.Fatal("principal_action buckets must be per principal")
	}
}

func TestScopesAndFilters(t *testing.T) {
	rules := []Rule{
		{ID: "pa", Scope: ScopePrincipalAction, Principal: "alice", ActionType: "*", Burst: 100, RefillPerMinute: 1},
		{ID: "pr", Scope: ScopePrincipalResource, ActionType: "fs.write", Resource: "file://workspace/**", Burst: 100, RefillPerMinute: 1},
		{ID: "gt", Scope: ScopeGlobalTool, ActionType: "net.http_request", Burst: 100, RefillPerMinute: 1},
	}
	l := mustNew(t, RulesConfig{Rules: rules, EvictAfter: 200 * time.Hour})
	cases := []struct {
		a    Action
		want []string // bucket keys, sorted by rule id
	}{
		{Action{"alice", "fs.read", "file://workspace/x"}, []string{"principal_action|pa|5:alice|7:fs.read"}},
		{Action{"bob", "fs.read", "file://workspace/x"}, nil},
		{Action{"bob", "fs.write", "file://workspace/x"}, []string{"principal_resource|pr|3:bob|18:file://workspace/x"}},
		{Action{"bob", "fs.write", "file://etc/x"}, nil},
		{Action{"bob", "net.http_request", "url://a"}, []string{"global_tool|gt|16:net.http_request"}},
		{Action{"alice", "net.http_request", "url://a"}, []string{"global_tool|gt|16:net.http_request", "principal_action|pa|5:alice|16:net.http_request"}},
	}
	for _, c := range cases {
		v := l.Check(c.a, t0)
		var got []string
		for _, h := range v.Hits {
			got = append(got, h.BucketKey)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Errorf("%+v: buckets %v, want %v", c.a, got, c.want)
		}
	}
}

// TestAllBucketsBeforeAny: an action blocked by one empty bucket takes
// nothing from the others.
func TestAllBucketsBeforeAny(t *testing.T) {
	l := mustNew(t, RulesConfig{Rules: []Rule{
		{ID: "wide", Scope: ScopeGlobalTool, ActionType: "*", Burst: 10, RefillPerMinute: 1},
		{ID: "narrow", Scope: ScopePrincipalResource, Resource: "file://workspace/hot", Burst: 1, RefillPerMinute: 1},
	}, EvictAfter: time.Hour})
	hot := Action{"alice", "fs.write", "file://workspace/hot"}
	if !l.Check(hot, t0).Allowed {
		t.Fatal("first hot write refused")
	}
	for i := 0; i < 5; i++ {
		if v := l.Check(hot, t0); v.Allowed || v.Denied.RuleID != "narrow" {
			t.Fatalf("hot write %d: %+v", i, v)
		}
	}
	for i := 0; i < 9; i++ {
		if !l.Check(Action{"alice", "fs.write", "file://workspace/cold"}, t0).Allowed {
			t.Fatalf("denied hot writes consumed the shared bucket: cold write %d refused", i)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	ok := Rule{ID: "a", Scope: ScopeGlobalTool, ActionType: "*", Burst: 1, RefillPerMinute: 1}
	cases := map[string]RulesConfig{
		"id must be":            {Rules: []Rule{{Scope: ScopeGlobalTool, ActionType: "*", Burst: 1, RefillPerMinute: 1}}},
		"duplicate rule id":     {Rules: []Rule{ok, ok}},
		"burst must be":         {Rules: []Rule{{ID: "b", Scope: ScopeGlobalTool, ActionType: "*", RefillPerMinute: 1}}},
		"refill_per_minute":     {Rules: []Rule{{ID: "b", Scope: ScopeGlobalTool, ActionType: "*", Burst: 1}}},
		"needs an action_type":  {Rules: []Rule{{ID: "b", Scope: ScopePrincipalAction, Burst: 1, RefillPerMinute: 1}}},
		"needs a resource glob": {Rules: []Rule{{ID: "b", Scope: ScopePrincipalResource, Burst: 1, RefillPerMinute: 1}}},
		"unknown scope":         {Rules: []Rule{{ID: "b", Scope: "per_agent", ActionType: "*", Burst: 1, RefillPerMinute: 1}}},
		"resource:":             {Rules: []Rule{{ID: "b", Scope: ScopePrincipalResource, Resource: "a\\b", Burst: 1, RefillPerMinute: 1}}},
		"evict_after_seconds":   {Rules: []Rule{{ID: "b", Scope: ScopeGlobalTool, ActionType: "*", Burst: 60, RefillPerMinute: 1}}, EvictAfter: time.Minute},
	}
	for want, cfg := range cases {
		if _, err := NewRules(cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
}

// TestIdleBucketsAreForgotten: memory is bounded by MaxBuckets and idle
// buckets go without any goroutine.
func TestIdleBucketsAreForgotten(t *testing.T) {
	l := mustNew(t, RulesConfig{Rules: []Rule{{ID: "r", Scope: ScopePrincipalResource, Resource: "**", Burst: 1, RefillPerMinute: 60}},
		EvictAfter: time.Minute, MaxBuckets: 50})
	for i := 0; i < 1000; i++ {
		l.Check(Action{fmt.Sprint("p", i%20), "fs.read", fmt.Sprint("r/", i)}, t0)
	}
	if n := l.Buckets(); n != 50 {
		t.Fatalf("kept %d buckets, want the bound 50", n)
	}
	l.Check(Action{"p", "fs.read", "fresh"}, t0.Add(2*time.Minute))
	if n := l.Buckets(); n != 1 {
		t.Fatalf("idle buckets not pruned: %d left", n)
	}
}

// TestContention: 64 goroutines hammer overlapping buckets while a
// virtual clock advances; no bucket ever grants more than
// burst + rate × elapsed, and every grant consumed from all its buckets.
func TestContention(t *testing.T) {
	const burst, perMinute = 20, 600 // 10 per second
	l := mustNew(t, RulesConfig{Rules: []Rule{
		{ID: "shared", Scope: ScopeGlobalTool, ActionType: "*", Burst: burst, RefillPerMinute: perMinute},
		{ID: "per", Scope: ScopePrincipalAction, ActionType: "*", Burst: burst, RefillPerMinute: perMinute},
	}})
	var clock atomic.Int64 // nanoseconds since t0
	var granted atomic.Int64
	perPrincipal := make([]atomic.Int64, 4)
	var wg sync.WaitGroup
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				now := t0.Add(time.Duration(clock.Add(int64(time.Millisecond))))
				if l.Check(Action{Principal: fmt.Sprint("p", g%4), ActionType: "x.y"}, now).Allowed {
					granted.Add(1)
					perPrincipal[g%4].Add(1)
				}
			}
		}(g)
	}
	wg.Wait()
	elapsed := time.Duration(clock.Load())
	bound := int64(burst + perMinute*elapsed.Minutes())
	if got := granted.Load(); got > bound {
		t.Fatalf("shared bucket granted %d > burst + rate×time = %d over %v", got, bound, elapsed)
	}
	if got := granted.Load(); got < bound-2 {
		t.Fatalf("shared bucket granted only %d of %d: tokens lost", got, bound)
	}
	for i := range perPrincipal {
		if got := perPrincipal[i].Load(); got > bound {
			t.Fatalf("principal %d granted %d > %d", i, got, bound)
		}
	}
}

func TestWindow(t *testing.T) {
	w, err := NewWindow(2, 10)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Allow("alice", t0) || !w.Allow("alice", t0.Add(time.Second)) || w.Allow("alice", t0.Add(2*time.Second)) {
		t.Fatal("window of 2 per minute not enforced")
	}
	if !w.Allow("bob", t0) {
		t.Fatal("windows are per key")
	}
	if !w.Allow("alice", t0.Add(time.Minute)) {
		t.Fatal("next minute did not start a new window")
	}
	if _, err := NewWindow(0, 0); err == nil {
		t.Fatal("zero limit accepted")
	}
}

// TestBucketsInUseAreNeverForgottenForRoom: forgetting a bucket still in
// use would refill it, so an agent that emptied one could flood made-up
// keys until it was evicted and came back full. New keys past the bound
// are refused instead; and one principal holds at most its share, so its
// flood cannot crowd out another principal's buckets.
func TestBucketsInUseAreNeverForgottenForRoom(t *testing.T) {
	l := mustNew(t, RulesConfig{Rules: []Rule{
		{ID: "w", Scope: ScopePrincipalAction, ActionType: "*", Burst: 2, RefillPerMinute: 0.1},
	}, MaxBuckets: 80})
	drain := Action{"mallory", "fs.write", "file://workspace/README.md"}
	for range 2 {
		if !l.Check(drain, t0).Allowed {
			t.Fatal("the burst")
		}
	}
	refusedJunk := 0
	for i := range 1000 {
		if !l.Check(Action{"mallory", fmt.Sprintf("x.junk%d", i), "x://y"}, t0.Add(time.Millisecond)).Allowed {
			refusedJunk++
		}
	}
	if refusedJunk == 0 {
		t.Fatal("a principal's made-up keys past its share were all given fresh buckets")
	}
	if l.Check(drain, t0.Add(2*time.Millisecond)).Allowed {
		t.Fatal("the emptied bucket came back full after the flood")
	}
	if !l.Check(Action{"alice", "fs.write", "file://workspace/a"}, t0.Add(3*time.Millisecond)).Allowed {
		t.Fatal("another principal was crowded out by the flood")
	}
}
