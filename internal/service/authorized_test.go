package service

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/policy/action"
)

func report(f *fixture, actionID, traceID string, who action.Identity) error {
	_, err := f.svc.Report(context.Background(), []byte(fmt.Sprintf(`{"action_id":%q,"trace_id":%q,"outcome":"SUCCEEDED"}`, actionID, traceID)), who)
	return err
}

func wantNotFound(t *testing.T, err error, what string) {
	t.Helper()
	if !isCode(err, CodeNotFound) || AsError(err).Status != http.StatusNotFound {
		t.Fatalf("%s: %v, want 404 not_found", what, err)
	}
}

// TestReportOnlyAuthorizedActions is issue 8 #10: bob cannot report an
// action that never existed, nor alice's, nor a denied one.
func TestReportOnlyAuthorizedActions(t *testing.T) {
	f := newFixture(t, true)
	ctx := context.Background()
	bob := action.Identity{Principal: "bob", Agent: "bot"}
	if _, err := f.svc.Process(ctx, body("ok1", "orders.read", "shop://orders/1", nil, ""), alice); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Process(ctx, body("no1", "payments.compensate", "payments://shop/1", nil, ""), alice); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Process(ctx, body("wait1", "payments.refund", "payments://shop/1", map[string]any{"amount": 500}, ""), alice); err != nil {
		t.Fatal(err)
	}
	before := len(f.rec.events)
	wantNotFound(t, report(f, "never", "t-never", bob), "never existed")
	wantNotFound(t, report(f, "ok1", "t-ok1", bob), "alice's action, reported by bob")
	wantNotFound(t, report(f, "ok1", "t-other", alice), "another trace")
	wantNotFound(t, report(f, "no1", "t-no1", alice), "a denied action")
	wantNotFound(t, report(f, "wait1", "t-wait1", alice), "an action waiting for approval")
	if len(f.rec.events) != before {
		t.Fatalf("a refused report was recorded as evidence")
	}
	if err := report(f, "ok1", "t-ok1", alice); err != nil {
		t.Fatalf("alice's own report: %v", err)
	}
	if ev := f.rec.last(audit.EventExternalReported); ev.ActionID != "ok1" || ev.Principal != "alice" {
		t.Fatalf("event %+v", ev)
	}
}

func TestReportWindowExpires(t *testing.T) {
	f := newFixture(t, false)
	if _, err := f.svc.Process(context.Background(), body("ok2", "orders.read", "shop://orders/1", nil, ""), alice); err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(DefaultReportWindow - time.Second)
	if err := report(f, "ok2", "t-ok2", alice); err != nil {
		t.Fatalf("within the window: %v", err)
	}
	f.now = f.now.Add(time.Second)
	wantNotFound(t, report(f, "ok2", "t-ok2", alice), "after the window")
}

// TestAuthorizedIsBounded: the memory keeps at most its capacity, and a
// principal at most its share; the oldest authorization goes first.
func TestAuthorizedIsBounded(t *testing.T) {
	m, err := NewAuthorized(16, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, id := range []string{"a", "b", "c"} {
		_ = m.Add(context.Background(), "alice", "t", id, now)
	}
	if m.cache.Len() != 2 || reportable(m, "alice", "t", "a", now) || !reportable(m, "alice", "t", "c", now) {
		t.Fatalf("len %d; a reportable %v", m.cache.Len(), reportable(m, "alice", "t", "a", now))
	}
	if reportable(m, "alice", "t", "c", now.Add(time.Minute)) || m.cache.Len() != 1 {
		t.Fatalf("expired entry kept: len %d", m.cache.Len())
	}
	for p := range 12 {
		for _, id := range []string{"x", "y"} {
			_ = m.Add(context.Background(), fmt.Sprint("p", p), "t", id, now)
		}
	}
	if m.cache.Len() != 16 || len(m.elems) != 16 {
		t.Fatalf("len %d, %d tracked; want the capacity, 16", m.cache.Len(), len(m.elems))
	}
}

// TestAuthorizedFloodKeepsOthers: one principal authorizing far more than
// the memory holds cannot evict what another principal may still report.
func TestAuthorizedFloodKeepsOthers(t *testing.T) {
	m, err := NewAuthorized(64, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	_ = m.Add(context.Background(), "bob", "t", "bob-1", now)
	for i := range 10000 {
		_ = m.Add(context.Background(), "alice", "t", fmt.Sprint(i), now)
	}
	if !reportable(m, "bob", "t", "bob-1", now) {
		t.Fatal("alice's flood evicted bob's authorized action")
	}
	if !reportable(m, "alice", "t", "9999", now) || reportable(m, "alice", "t", "9991", now) {
		t.Fatal("alice keeps other than her 8 newest")
	}
	if m.cache.Len() != 9 {
		t.Fatalf("len %d, want 9", m.cache.Len())
	}
}

func reportable(m ReportIndex, principal, traceID, actionID string, now time.Time) bool {
	ok, err := m.Reportable(context.Background(), principal, traceID, actionID, now)
	return ok && err == nil
}
