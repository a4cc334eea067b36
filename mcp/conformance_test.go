package mcp

import (
	"context"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/policy"
)

// allowAll is the governor of the conformance harness: every request is
// allowed and every tool listed, so only the relay is under test.
type allowAll struct{}

func (allowAll) Authorize(context.Context, AuthzRequest) (AuthzResult, error) {
	return AuthzResult{Decision: policy.Allow, Reason: "conformance"}, nil
}
func (allowAll) Completed(context.Context, AuthzRequest, AuthzResult, Outcome) {}
func (allowAll) Visible(context.Context, AuthzRequest) bool                    { return true }
func (allowAll) Rejected(context.Context, AuthzRequest, string, string)        {}

// TestServeForConformance serves the gateway in front of the Go SDK
// everything-server so the official conformance suite can drive it:
//
//	NOMOS_MCP_CONFORMANCE_ADDR=127.0.0.1:8181 NOMOS_MCP_CONFORMANCE_UPSTREAM=stdio \
//	NOMOS_MCP_CONFORMANCE_SECONDS=300 go test -run TestServeForConformance ./mcp
//
// NOMOS_MCP_CONFORMANCE_URL points it at an upstream already running
// instead. It is skipped unless NOMOS_MCP_CONFORMANCE_ADDR is set.
func TestServeForConformance(t *testing.T) {
	addr := os.Getenv("NOMOS_MCP_CONFORMANCE_ADDR")
	if addr == "" {
		t.Skip("set NOMOS_MCP_CONFORMANCE_ADDR to serve the gateway for the conformance suite")
	}
	transport := os.Getenv("NOMOS_MCP_CONFORMANCE_UPSTREAM")
	if transport == "" {
		transport = TransportStdio
	}
	var u *Upstream
	if url := os.Getenv("NOMOS_MCP_CONFORMANCE_URL"); url != "" {
		u = startedUpstream(t, UpstreamConfig{Name: "everything", URL: url})
	} else {
		u = upstreamFor(t, transport, nil)
	}
	anonymous := func(*http.Request, []byte) (Identity, error) { return Identity{Principal: "anonymous"}, nil }
	g, err := NewGateway(RouteConfig{Upstreams: []string{u.Name()}}, map[string]*Upstream{u.Name(): u}, allowAll{}, anonymous, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	seconds, _ := strconv.Atoi(os.Getenv("NOMOS_MCP_CONFORMANCE_SECONDS"))
	time.Sleep(time.Duration(max(seconds, 60)) * time.Second)
	_ = g.Close()
	_ = srv.Close()
}

// startedUpstream builds and starts an upstream, closed when the test ends.
func startedUpstream(t *testing.T, cfg UpstreamConfig) *Upstream {
	t.Helper()
	u, err := NewUpstream(cfg, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := u.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.Close() })
	return u
}
