package identity

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
)

func sharedClient(t *testing.T, addr string) *sharedstate.Client {
	t.Helper()
	c, err := sharedstate.Open(sharedstate.Config{Address: addr, KeyPrefix: "test:" + t.Name() + ":", FailureThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Two replicas share one nonce space: a signature admitted by one is a
// replay on the other, and a store that cannot answer refuses.
func TestSharedReplayAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	a := NewSharedReplay(sharedClient(t, srv.Addr), time.Minute)
	b := NewSharedReplay(sharedClient(t, srv.Addr), time.Minute)
	ctx, now := context.Background(), time.Now()
	if err := a.Admit(ctx, "n\x00agent\x00nonce-1", now, now); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if err := b.Admit(ctx, "n\x00agent\x00nonce-1", now, now); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay on the other replica: %v", err)
	}
	if err := b.Admit(ctx, "n\x00agent\x00nonce-2", now, now); err != nil {
		t.Fatalf("a fresh nonce: %v", err)
	}
	srv.Stop()
	err := a.Admit(ctx, "n\x00agent\x00nonce-3", now, now)
	if !errors.Is(err, sharedstate.ErrUnavailable) {
		t.Fatalf("redis down: %v", err)
	}
	// The authenticator's refusal says auth failed and why.
	if ae := replayError(err); !errors.Is(ae, ErrAuth) || !errors.Is(ae, sharedstate.ErrUnavailable) {
		t.Fatalf("replayError = %v", ae)
	}
}
