package mcp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
)

// Two replicas of one route share the per-principal cap and each other's
// bindings; another route has its own cap; a released session frees its
// slot wherever it is released.
func TestRedisRegistryAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	open := func(scope, self string) SessionRegistry {
		c, err := sharedstate.Open(sharedstate.Config{Address: srv.Addr, KeyPrefix: "test:" + t.Name() + ":", FailureThreshold: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return NewRedisRegistry(c, scope, self)
	}
	r1, r2 := open("route", "http://10.0.0.1:8281"), open("route", "http://10.0.0.2:8282")
	other := open("other-route", "http://10.0.0.1:8281")
	ctx := context.Background()
	admit := func(r SessionRegistry, sid string) bool {
		t.Helper()
		ok, err := r.Admit(ctx, sid, "alice", 2, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !admit(r1, "s1") || !admit(r2, "s2") {
		t.Fatal("two sessions under a cap of two refused")
	}
	if admit(r1, "s3") || admit(r2, "s3") {
		t.Fatal("a third session admitted across replicas under a cap of two")
	}
	if !admit(other, "s4") {
		t.Fatal("another route shares the cap")
	}
	if owner, err := r2.Owner(ctx, "s1"); owner != "http://10.0.0.1:8281" || err != nil {
		t.Fatalf("owner of s1 seen from replica 2: %q %v", owner, err)
	}
	if owner, _ := r1.Owner(ctx, "s1"); owner != "" {
		t.Fatalf("a replica's own session not held by it is gone, got owner %q", owner)
	}
	if owner, _ := r1.Owner(ctx, "unknown"); owner != "" {
		t.Fatalf("unknown session has owner %q", owner)
	}
	if err := r2.Release(ctx, "s1"); err != nil { // released by the replica that found the owner gone
		t.Fatal(err)
	}
	if owner, _ := r2.Owner(ctx, "s1"); owner != "" || !admit(r2, "s5") {
		t.Fatalf("release did not free the binding and the slot (owner %q)", owner)
	}
	srv.Stop()
	if _, err := r1.Admit(ctx, "s6", "alice", 2, time.Minute); !errors.Is(err, sharedstate.ErrUnavailable) {
		t.Fatalf("redis down: %v", err)
	}
	if _, err := r1.Owner(ctx, "s2"); !errors.Is(err, sharedstate.ErrUnavailable) {
		t.Fatalf("redis down: %v", err)
	}
}

// Only loopback and private IP addresses are forwarded to: a registry entry
// naming anything else would carry clients' credentials away.
func TestParseAdvertise(t *testing.T) {
	for _, ok := range []string{"http://127.0.0.1:8281", "https://10.0.3.4:443", "http://[fd00::1]:8281/", "http://192.168.1.2:80"} {
		if _, err := ParseAdvertise(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ftp://127.0.0.1:1", "http://127.0.0.1", "http://replica-1:8281", "http://8.8.8.8:80",
		"http://127.0.0.1:8281/mcp", "http://u:p@127.0.0.1:8281", "http://127.0.0.1:8281?x=1"} {
		if _, err := ParseAdvertise(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// A request forwarded to the session's owner loses the headers the route
// names as untrusted for it (trusted identity headers the client sent
// itself): the owner sees this replica as the peer and may trust it.
func TestForwardToOwnerDropsUntrustedHeaders(t *testing.T) {
	var got http.Header
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.WriteHeader(http.StatusAccepted)
	}))
	defer owner.Close()
	target, err := url.Parse(owner.URL)
	if err != nil {
		t.Fatal(err)
	}
	g := &Gateway{log: slog.New(slog.NewTextHandler(io.Discard, nil)), route: RouteConfig{
		UntrustedHeaders: func(in *http.Request) []string {
			if in.Header.Get("X-From-Trusted-Proxy") != "" {
				return nil
			}
			return []string{"X-Principal"}
		},
	}}
	for _, trusted := range []bool{false, true} {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.Header.Set("X-Principal", "admin")
		r.Header.Set("Authorization", "Bearer k")
		if trusted {
			r.Header.Set("X-From-Trusted-Proxy", "1")
		}
		w := httptest.NewRecorder()
		g.forwardToOwner(w, r, []byte(`{}`), target, "sid")
		if w.Code != http.StatusAccepted {
			t.Fatalf("forward: %d", w.Code)
		}
		if (got.Get("X-Principal") != "") != trusted || got.Get("Authorization") != "Bearer k" {
			t.Fatalf("trusted=%v: owner got X-Principal %q, Authorization %q", trusted, got.Get("X-Principal"), got.Get("Authorization"))
		}
	}
}
