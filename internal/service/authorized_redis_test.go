package service

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
)

// The Redis index is one memory for every replica, bound to the principal
// and to the window, and refuses to answer rather than guess when Redis
// is down.
func TestRedisReportIndexIsShared(t *testing.T) {
	srv := redistest.Start(t)
	open := func() ReportIndex {
		c, err := sharedstate.Open(sharedstate.Config{Address: srv.Addr, KeyPrefix: "test:" + t.Name() + ":", FailureThreshold: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return NewRedisReportIndex(c, time.Second)
	}
	one, two := open(), open()
	ctx, now := context.Background(), time.Now()
	if err := one.Add(ctx, "alice", "t1", "a1", now); err != nil {
		t.Fatal(err)
	}
	if ok, err := two.Reportable(ctx, "alice", "t1", "a1", now); !ok || err != nil {
		t.Fatalf("authorized on one replica, reported on another: %v %v", ok, err)
	}
	if ok, _ := two.Reportable(ctx, "bob", "t1", "a1", now); ok {
		t.Fatal("another principal may report")
	}
	deadline := time.Now().Add(5 * time.Second)
	for ok, _ := two.Reportable(ctx, "alice", "t1", "a1", now); ok; ok, _ = two.Reportable(ctx, "alice", "t1", "a1", now) {
		if time.Now().After(deadline) {
			t.Fatal("the entry outlived its window")
		}
		time.Sleep(100 * time.Millisecond)
	}
	srv.Stop()
	if _, err := two.Reportable(ctx, "alice", "t1", "a1", now); !errors.Is(err, sharedstate.ErrUnavailable) {
		t.Fatalf("redis down: %v", err)
	}
	if err := one.Add(ctx, "alice", "t2", "a2", now); !errors.Is(err, sharedstate.ErrUnavailable) {
		t.Fatalf("redis down: %v", err)
	}
}
