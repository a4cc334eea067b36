package caddymodule

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// gather reads one metric family from a registry as "label=value,..." ->
// value.
func gather(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			var parts []string
			for _, l := range m.GetLabel() {
				parts = append(parts, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(parts)
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			out[strings.Join(parts, ",")] = v
		}
	}
	return out
}

func delta(before, after map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// TestDecisionMetric: every decision is counted with bounded labels: the
// reason code without its message, the front door, and action types the
// policy does not name as other.
func TestDecisionMetric(t *testing.T) {
	app := newTestApp(t, nil)
	reg := app.ctx.GetMetricsRegistry()
	before := gather(t, reg, "nomos_decisions_total")
	h := newTestHandler(t, app, nil)
	serve(t, h, signed(orderBody), nil)
	serve(t, h, signed(strings.Replace(orderBody, "orders.read", "orders.delete", 1)), nil)
	serve(t, h, signed(`{"schema_version":"v1"}`), nil)
	got := delta(before, gather(t, reg, "nomos_decisions_total"))
	want := map[string]float64{
		"action_type=orders.read,decision=ALLOW,front_door=http_api,reason=allow_by_rule": 1,
		"action_type=other,decision=DENY,front_door=http_api,reason=deny_by_default":      1,
		"action_type=other,decision=DENY,front_door=http_api,reason=VALIDATION_ERROR":     1,
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// TestRateLimitMetricAndDenial: a bucket denial is a 200 DENY with
// RATE_LIMIT_EXCEEDED and retry information, and each check is counted.
func TestRateLimitMetricAndDenial(t *testing.T) {
	app := newTestApp(t, func(a *App) {
		a.Runtime = &RuntimeConfig{RateLimits: &RateLimitsConfig{
			PrincipalAction: []RateLimitRule{{ID: "orders", ActionType: "orders.read", Burst: 1, RefillPerMinute: 1}},
		}}
	})
	reg := app.ctx.GetMetricsRegistry()
	before := gather(t, reg, "nomos_rate_limit_total")
	h := newTestHandler(t, app, nil)
	if rec, _ := serve(t, h, signed(orderBody), nil); rec.Code != 200 || decode(t, rec)["decision"] != "ALLOW" {
		t.Fatalf("first: %d %s", rec.Code, rec.Body)
	}
	rec, _ := serve(t, h, signed(strings.Replace(orderBody, `"a1"`, `"a2"`, 1)), nil)
	body := decode(t, rec)
	if rec.Code != 200 || body["decision"] != "DENY" || !strings.HasPrefix(body["reason"].(string), "RATE_LIMIT_EXCEEDED: retry after 60s") ||
		body["retry_after_seconds"] != float64(60) {
		t.Fatalf("second: %d %v", rec.Code, body)
	}
	limit, _ := body["limit"].(map[string]any)
	if limit["rule_id"] != "orders" || limit["scope"] != "principal_action" || limit["remaining_tokens"] != float64(0) {
		t.Fatalf("limit detail: %v", body["limit"])
	}
	got := delta(before, gather(t, reg, "nomos_rate_limit_total"))
	if got["result=allowed,rule_id=orders,scope=principal_action"] != 1 || got["result=exceeded,rule_id=orders,scope=principal_action"] != 1 {
		t.Fatalf("rate limit metric: %v", got)
	}
}

// TestMetricsSurviveReload: a new config registers the same counters in
// its own registry, so totals continue across a reload.
func TestMetricsSurviveReload(t *testing.T) {
	app := newTestApp(t, nil)
	h := newTestHandler(t, app, nil)
	serve(t, h, signed(orderBody), nil)
	key := "action_type=orders.read,decision=ALLOW,front_door=http_api,reason=allow_by_rule"
	old := gather(t, app.ctx.GetMetricsRegistry(), "nomos_decisions_total")[key]
	if old < 1 {
		t.Fatalf("not counted: %v", old)
	}
	next := &App{Policies: app.Policies, Identity: app.Identity, Audit: app.Audit, Approvals: app.Approvals}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := next.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer next.Cleanup()
	_ = app.Cleanup()
	if got := gather(t, ctx.GetMetricsRegistry(), "nomos_decisions_total")[key]; got != old {
		t.Fatalf("after reload the counter reads %v, want %v", got, old)
	}
}

// TestTransportGuard: rate_limit_per_minute answers 429 rate_limited per
// principal before the body is decided.
func TestTransportGuard(t *testing.T) {
	app := newTestApp(t, func(a *App) { a.Runtime = &RuntimeConfig{RateLimitPerMinute: 2} })
	h := newTestHandler(t, app, nil)
	// The window is a calendar minute: should it turn during the test,
	// the 429 comes one or two requests later, never never.
	var codes []int
	for i := 0; i < 5 && (len(codes) == 0 || codes[len(codes)-1] != http.StatusTooManyRequests); i++ {
		rec, _ := serve(t, h, signed(orderBody), nil)
		codes = append(codes, rec.Code)
		if rec.Code == http.StatusTooManyRequests {
			if body := decode(t, rec); !strings.HasPrefix(body["reason"].(string), "rate_limited: ") {
				t.Fatalf("429 body: %v", body)
			}
		}
	}
	if codes[0] != 200 || codes[1] != 200 || codes[len(codes)-1] != http.StatusTooManyRequests {
		t.Fatalf("codes %v, want 200s then 429", codes)
	}
}
