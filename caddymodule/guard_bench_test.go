package caddymodule

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// BenchmarkGuardAllow is the work nomos_guard does in the request's own
// goroutine for an allowed GET in plain HTTP mode, with the stdout audit
// sink (Caddy's logger): authenticate, map, decide, commit trace.start and
// action.decision, filter the response. Completions run on the App's
// workers beside the loop and are waited for once, after it. The end-to-end
// figure with a real reverse_proxy is make bench-e2e's configuration C.
func BenchmarkGuardAllow(b *testing.B) {
	app := newGuardApp(b, func(a *App) { a.Audit.Sinks = []SinkConfig{{Type: "stdout"}} })
	h := newGuard(b, app, nil)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/json")
		_, err := io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"This is a simple text response for testing."}]}}`)
		return err
	})
	b.ReportAllocs()
	for b.Loop() {
		req := guardRequest(http.MethodGet, "/v1/orders?id=7", "")
		repl := caddyhttp.NewTestReplacer(req)
		ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl)
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
		rec := httptest.NewRecorder()
		if err := h.ServeHTTP(rec, req.WithContext(ctx), next); err != nil || rec.Code != http.StatusOK {
			b.Fatalf("err=%v code=%d", err, rec.Code)
		}
	}
	b.StopTimer()
	if !app.after.wait(afterResponseWait) {
		b.Fatal("completions still running")
	}
}
