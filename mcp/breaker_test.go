package mcp

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
)

func breakerUpstream(t *testing.T, hooks *hangHooks, threshold int, open time.Duration) *Upstream {
	return inprocUpstream(t, "a", newTestServer("a", hooks), func(c *UpstreamConfig) {
		c.Timeouts.Call = 150 * time.Millisecond
		c.Breaker = BreakerConfig{FailureThreshold: threshold, OpenTimeout: open}
	})
}

func waitState(t *testing.T, u *Upstream, state string) {
	t.Helper()
	eventually(t, "breaker "+state, func() bool { return u.BreakerState() == state })
}

func wantClass(t *testing.T, text string, isErr bool, class string) {
	t.Helper()
	if !isErr || !strings.HasPrefix(text, class) {
		t.Fatalf("result %q (isError %v), want %s", text, isErr, class)
	}
}

// TestBreakerSequence walks closed → open → half-open (failed probe) →
// open → half-open (successful probe) → closed on a hanging remote upstream.
func TestBreakerSequence(t *testing.T) {
	hooks := newHangHooks()
	u := breakerUpstream(t, hooks, 2, 300*time.Millisecond)
	gov := newTestGovernor()
	_, c := newGateway(t, RouteConfig{}, gov, u)
	c.initialize()

	for i := range 2 {
		text, isErr := c.callTool("hang", `{}`)
		wantClass(t, text, isErr, audit.ResultUpstreamTimeout)
		if i == 0 && u.BreakerState() != "closed" {
			t.Fatalf("state after one failure = %s", u.BreakerState())
		}
	}
	if u.BreakerState() != "open" {
		t.Fatalf("state after threshold = %s", u.BreakerState())
	}
	before := gov.requestCount()
	start := time.Now()
	text, isErr := c.callTool("echo", `{"text":"x"}`)
	wantClass(t, text, isErr, audit.ResultUpstreamUnavailable)
	if gov.requestCount() != before+1 || time.Since(start) > 100*time.Millisecond {
		t.Fatal("an open breaker must fail fast after policy allowed the call")
	}
	if out := gov.lastOutcome(); out.ErrorClass != "breaker_open" {
		t.Fatalf("outcome = %+v", out)
	}

	waitState(t, u, "half-open")
	drain := true
	for drain { // forget the starts of the calls that timed out
		select {
		case <-hooks.started:
		default:
			drain = false
		}
	}
	probeDone := make(chan string)
	go func() {
		text, _ := c.callTool("hang", `{}`)
		probeDone <- text
	}()
	<-hooks.started
	text, isErr = c.callTool("echo", `{"text":"x"}`)
	wantClass(t, text, isErr, audit.ResultUpstreamUnavailable) // one probe at a time
	if got := <-probeDone; !strings.HasPrefix(got, audit.ResultUpstreamTimeout) {
		t.Fatalf("probe = %q", got)
	}
	if u.BreakerState() != "open" {
		t.Fatalf("a failed probe must reopen, state = %s", u.BreakerState())
	}

	waitState(t, u, "half-open")
	if text, isErr := c.callTool("echo", `{"text":"ok"}`); isErr || text != "a:ok" {
		t.Fatalf("probe = %q", text)
	}
	if u.BreakerState() != "closed" {
		t.Fatalf("a successful probe must close, state = %s", u.BreakerState())
	}
}

// TestBreakerIgnoresToolErrorsAndCancellations: only transport, protocol
// and timeout failures count.
func TestBreakerIgnoresToolErrorsAndCancellations(t *testing.T) {
	hooks := newHangHooks()
	u := breakerUpstream(t, hooks, 1, time.Minute)
	_, c := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	c.initialize()
	for range 3 {
		text, isErr := c.callTool("fail", `{}`)
		if !isErr || !strings.Contains(text, "on purpose") {
			t.Fatalf("fail = %q", text)
		}
	}
	if m := c.call("prompts/get", `{"name":"nope"}`); m.Error == nil {
		t.Fatal("an unknown prompt succeeded")
	}
	if u.BreakerState() != "closed" {
		t.Fatalf("tool errors opened the breaker")
	}

	var wg sync.WaitGroup
	wg.Add(1)
	var text string
	var isErr bool
	go func() {
		defer wg.Done()
		text, isErr = c.callTool("hang", `{}`)
	}()
	<-hooks.started
	if r := c.do("POST", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7,"reason":"user"}}`, nil); r.StatusCode != 202 {
		t.Fatalf("cancel: %d", r.StatusCode)
	}
	select {
	case <-hooks.canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the cancellation never reached the upstream")
	}
	wg.Wait()
	wantClass(t, text, isErr, audit.ResultUpstreamCanceled)
	if u.BreakerState() != "closed" {
		t.Fatal("a cancellation opened the breaker")
	}
}

// TestRemoteUpstreamHangTimesOut: a hanging remote upstream gives
// UPSTREAM_TIMEOUT within the call timeout.
func TestRemoteUpstreamHangTimesOut(t *testing.T) {
	u := breakerUpstream(t, nil, 5, time.Minute)
	gov := newTestGovernor()
	_, c := newGateway(t, RouteConfig{}, gov, u)
	c.initialize()
	start := time.Now()
	text, isErr := c.callTool("hang", `{}`)
	wantClass(t, text, isErr, audit.ResultUpstreamTimeout)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	if out := gov.lastOutcome(); out.Classification != audit.ResultUpstreamTimeout || out.ErrorClass != "timeout" {
		t.Fatalf("outcome = %+v", out)
	}
	_ = fmt.Sprint
}
