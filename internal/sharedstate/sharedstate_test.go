package sharedstate

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
)

func open(t testing.TB, addr string) *Client {
	t.Helper()
	c, err := Open(Config{Address: addr, KeyPrefix: "test:" + t.Name() + ":", FailureThreshold: 3, OpenTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSeenOnceIsSharedAcrossClients(t *testing.T) {
	srv := redistest.Start(t)
	a, b := open(t, srv.Addr), open(t, srv.Addr)
	ctx := context.Background()
	if seen, err := a.SeenOnce(ctx, "n1", time.Minute); err != nil || seen {
		t.Fatalf("first use: %v %v", seen, err)
	}
	if seen, err := b.SeenOnce(ctx, "n1", time.Minute); err != nil || !seen {
		t.Fatalf("replay on another replica: %v %v", seen, err)
	}
	if seen, _ := b.SeenOnce(ctx, "n2", time.Minute); seen {
		t.Fatal("a fresh nonce was seen")
	}
}

func TestTakeIsAllOrNothing(t *testing.T) {
	srv := redistest.Start(t)
	c := open(t, srv.Addr)
	ctx := context.Background()
	small := Bucket{Key: "small", Burst: 1, RefillPerMinute: 0.001, Evict: time.Minute}
	big := Bucket{Key: "big", Burst: 10, RefillPerMinute: 0.001, Evict: time.Minute}
	v, err := c.Take(ctx, []Bucket{small, big})
	if err != nil || !v.Allowed || len(v.Remaining) != 2 || v.Remaining[0] > 0.01 || v.Remaining[1] < 8.9 {
		t.Fatalf("first take: %+v %v", v, err)
	}
	v, err = c.Take(ctx, []Bucket{big, small})
	if err != nil || v.Allowed || v.RetryAfter <= 0 {
		t.Fatalf("second take should be refused by the small bucket: %+v %v", v, err)
	}
	// The refused take consumed nothing from the big bucket.
	v, _ = c.Take(ctx, []Bucket{big})
	if !v.Allowed || v.Remaining[0] < 7.9 || v.Remaining[0] > 8.1 {
		t.Fatalf("big bucket after a refused combined take: %+v", v)
	}
}

func TestTakeNeverAdmitsMoreThanBurstUnderContention(t *testing.T) {
	srv := redistest.Start(t)
	clients := []*Client{open(t, srv.Addr), open(t, srv.Addr)} // two replicas
	b := Bucket{Key: "shared", Burst: 20, RefillPerMinute: 0.0001, Evict: time.Minute}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func(c *Client) {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				if v, err := c.Take(context.Background(), []Bucket{b}); err == nil && v.Allowed {
					allowed.Add(1)
				}
			}
		}(clients[i%2])
	}
	wg.Wait()
	if got := allowed.Load(); got != 20 {
		t.Fatalf("allowed %d calls from a bucket of 20", got)
	}
}

func TestUnreachableServerFailsClosedThenRecovers(t *testing.T) {
	srv := redistest.Start(t)
	c := open(t, srv.Addr)
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for i := 0; i < 5; i++ {
		if _, err := c.SeenOnce(ctx, "x", time.Minute); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("call %d with the server down: %v", i, err)
		}
	}
	if h := c.Health(); h.Breaker != "open" || h.LastError == "" {
		t.Fatalf("health after failures: %+v", h)
	}
	srv.Restart(t)
	deadline := time.Now().Add(5 * time.Second)
	for c.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %+v", c.Health())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestConfigIsValidated(t *testing.T) {
	for _, cfg := range []Config{{}, {Address: "a:1", URL: "redis://a:1"}, {URL: "http://a"}, {Address: "a:1", DB: -1}} {
		if _, err := Open(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	if got := redactURL("redis://user:secret@host:6379/0"); got != "redis://***@host:6379/0" {
		t.Errorf("redactURL = %s", got)
	}
}
