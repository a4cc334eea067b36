package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestAllow(t *testing.T) {
	l, err := New(Config{Events: 2, Interval: time.Minute, Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < 3; i++ {
		if !l.Allow("alice", now) {
			t.Fatalf("event %d within burst refused", i)
		}
	}
	if l.Allow("alice", now) {
		t.Fatal("event past the burst allowed")
	}
	if !l.Allow("bob", now) {
		t.Fatal("buckets are per key")
	}
	if !l.Allow("alice", now.Add(30*time.Second)) {
		t.Fatal("bucket did not refill (2 per minute)")
	}
	if l.Allow("alice", now.Add(31*time.Second)) {
		t.Fatal("refilled too fast")
	}
}

func TestBoundedKeys(t *testing.T) {
	l, _ := New(Config{Events: 1, Interval: time.Hour, MaxKeys: 10})
	now := time.Now()
	for i := 0; i < 1000; i++ {
		l.Allow(fmt.Sprint("k", i), now)
	}
	if n := l.keys.Len(); n > 10 {
		t.Fatalf("kept %d buckets, want at most 10", n)
	}
}

func TestKeyedConfigErrors(t *testing.T) {
	for _, c := range []Config{{}, {Events: 1}, {Interval: time.Second}, {Events: -1, Interval: time.Second}} {
		if _, err := New(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
