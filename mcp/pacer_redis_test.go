package mcp

import (
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/internal/sharedstate"
	"github.com/caddy-nomos/nomos/internal/sharedstate/redistest"
)

// Two replicas of one route pace initialize from one bucket per
// principal: together they allow initialize_per_minute once, not twice.
// With Redis down, initialize is refused 503 state_unavailable rather than
// paced on local state.
func TestInitializePacedAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	replica := func() *rawClient {
		c, err := sharedstate.Open(sharedstate.Config{Address: srv.Addr, KeyPrefix: "test:" + t.Name() + ":", FailureThreshold: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		u := inprocUpstream(t, "a", newTestServer("a", nil), nil)
		_, rc := newGateway(t, RouteConfig{InitializePerMinute: 3, InitPacer: NewRedisInitPacer(c, "route")}, newTestGovernor(), u)
		return rc
	}
	one, two := replica(), replica()
	status := func(rc *rawClient, principal string) int {
		t.Helper()
		resp := (&rawClient{t: t, url: rc.url, principal: principal}).do(http.MethodPost, initBody, nil)
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests && !strings.HasPrefix(denyReason(t, resp), "rate_limited: ") {
			t.Fatalf("429 without rate_limited")
		}
		return resp.StatusCode
	}
	var got []int
	for _, rc := range []*rawClient{one, two, one, two, one} {
		got = append(got, status(rc, "alice"))
	}
	want := []int{200, 200, 200, 429, 429}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("initialize on alternating replicas with a shared pace of 3: %v, want %v", got, want)
		}
	}
	if s := status(two, "bob"); s != http.StatusOK {
		t.Fatalf("bob has his own bucket: %d", s)
	}
	srv.Stop()
	resp := (&rawClient{t: t, url: one.url, principal: "carol"}).do(http.MethodPost, initBody, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(denyReason(t, resp), "state_unavailable: ") {
		t.Fatalf("redis down: %d", resp.StatusCode)
	}
}
