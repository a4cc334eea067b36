package mcp

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestNoGoroutineLeakAcrossReloads: building and closing a gateway and a
// remote upstream, with a live session, leaves no goroutines behind.
func TestNoGoroutineLeakAcrossReloads(t *testing.T) {
	s := newTestServer("a", nil)
	upSrv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	defer upSrv.Close()
	cycle := func() {
		u, err := NewUpstream(UpstreamConfig{Name: "a", URL: upSrv.URL}, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := u.Start(ctx); err != nil {
			t.Fatal(err)
		}
		g, err := NewGateway(RouteConfig{Upstreams: []string{"a"}}, map[string]*Upstream{"a": u}, newTestGovernor(), headerAuth, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		gwSrv := httptest.NewServer(g)
		c := &rawClient{t: t, url: gwSrv.URL, principal: "alice"}
		c.initialize()
		if text, _ := c.callTool("echo", `{"text":"x"}`); text != "a:x" {
			t.Fatalf("echo = %q", text)
		}
		_ = g.Close()
		_ = u.Close()
		gwSrv.CloseClientConnections()
		gwSrv.Close()
		http.DefaultClient.CloseIdleConnections()
		upSrv.CloseClientConnections()
	}
	cycle() // warm up lazily started runtime goroutines
	base := runtime.NumGoroutine()
	for range 3 {
		cycle()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines, baseline %d:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}
