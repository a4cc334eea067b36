package mcp

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

// testGovernor decides by upstream tool name and records every call.
type testGovernor struct {
	mu        sync.Mutex
	decisions map[string]AuthzResult // by upstream_tool or action type
	hidden    map[string]bool        // tools Visible refuses
	requests  []AuthzRequest
	completed []Outcome
	failWith  error
	listed    [][2][]string // shown, hidden per tools/list
	rejected  []rejection
}

func (g *testGovernor) ToolsListed(_ context.Context, _ Identity, _ map[string]string, shown, hidden []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.listed = append(g.listed, [2][]string{shown, hidden})
}

func newTestGovernor() *testGovernor {
	return &testGovernor{decisions: map[string]AuthzResult{}, hidden: map[string]bool{}}
}

func (g *testGovernor) Authorize(_ context.Context, req AuthzRequest) (AuthzResult, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.requests = append(g.requests, req)
	if g.failWith != nil {
		return AuthzResult{}, g.failWith
	}
	key := req.Metadata["upstream_tool"]
	if key == "" {
		key = req.ActionType
	}
	res, ok := g.decisions[key]
	if !ok {
		return AuthzResult{Decision: policy.Allow, Reason: "allow_by_test"}, nil
	}
	if res.Decision == policy.RequireApproval && req.ApprovalID == res.ApprovalID {
		return AuthzResult{Decision: policy.Allow, Reason: "approved"}, nil
	}
	return res, nil
}

func (g *testGovernor) Completed(_ context.Context, _ AuthzRequest, _ AuthzResult, out Outcome) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.completed = append(g.completed, out)
}

// Visible hides a name listed in hidden: a tool by its upstream name,
// other surfaces by their resource.
func (g *testGovernor) Visible(_ context.Context, req AuthzRequest) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	name := req.Resource
	if req.ActionType == action.TypeMCPCall {
		name = req.Resource[strings.LastIndex(req.Resource, "/")+1:]
	}
	return !g.hidden[name] && !g.hidden[req.ToolFingerprint]
}

// Rejected records a refusal before policy.
func (g *testGovernor) Rejected(_ context.Context, req AuthzRequest, class, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rejected = append(g.rejected, rejection{req, class, reason})
}

type rejection struct {
	req           AuthzRequest
	class, reason string
}

func (g *testGovernor) set(key string, res AuthzResult) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.decisions[key] = res
}

func (g *testGovernor) lastRequest() AuthzRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.requests) == 0 {
		return AuthzRequest{}
	}
	return g.requests[len(g.requests)-1]
}

func (g *testGovernor) requestCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.requests)
}

func (g *testGovernor) lastOutcome() Outcome {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.completed) == 0 {
		return Outcome{}
	}
	return g.completed[len(g.completed)-1]
}

// headerAuth reads the principal from X-Test-Principal.
func headerAuth(r *http.Request, _ []byte) (Identity, error) {
	p := r.Header.Get("X-Test-Principal")
	if p == "" {
		return Identity{}, errors.New("missing credentials")
	}
	return Identity{Principal: p, Agent: "test-agent"}, nil
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// principalTransport adds the test credential to every request.
type principalTransport struct {
	principal string
	next      http.RoundTripper
}

func (p principalTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("X-Test-Principal", p.principal)
	return p.next.RoundTrip(r)
}

// serveGateway starts a loopback server for g.
func serveGateway(t *testing.T, g *Gateway) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		_ = g.Close()
		closeServer(srv)
	})
	return srv
}

// closeServer stops a test server that clients keep reconnecting to (an
// upstream's SSE stream comes back right after its connection is cut):
// httptest's Close closes the listener, then waits for active requests,
// so the connections are cut again until it returns.
func closeServer(srv *httptest.Server) {
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	for {
		srv.CloseClientConnections()
		select {
		case <-done:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// eventually polls cond until it holds or a 10s deadline passes: the SDK
// client dispatches notifications asynchronously from responses.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
