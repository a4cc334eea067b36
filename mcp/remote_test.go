package mcp

import (
	"context"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// headerRecorder remembers the Authorization headers an upstream saw.
type headerRecorder struct {
	mu   sync.Mutex
	seen []string
	next http.Handler
}

func (h *headerRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.seen = append(h.seen, r.Header.Get("Authorization"))
	h.mu.Unlock()
	h.next.ServeHTTP(w, r)
}

// TestClientCredentialsNeverForwarded: the upstream sees the configured
// static header, never the downstream client's own Authorization.
func TestClientCredentialsNeverForwarded(t *testing.T) {
	s := newTestServer("a", nil)
	rec := &headerRecorder{next: sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil)}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	u, err := NewUpstream(UpstreamConfig{Name: "a", URL: srv.URL, Headers: map[string]string{"Authorization": "Bearer upstream-token"}}, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	_, c := newGateway(t, RouteConfig{}, newTestGovernor(), u)
	c.initialize()
	c.do(http.MethodPost, `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`,
		map[string]string{"Authorization": "Bearer client-token"})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.seen) == 0 {
		t.Fatal("the upstream saw no request")
	}
	for _, h := range rec.seen {
		if h != "Bearer upstream-token" {
			t.Fatalf("upstream saw Authorization %q", h)
		}
	}
}

// TestUpstreamCAFile: a private CA is trusted only when configured.
func TestUpstreamCAFile(t *testing.T) {
	s := newTestServer("a", nil)
	srv := httptest.NewUnstartedServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(cfg UpstreamConfig) error {
		u, err := NewUpstream(cfg, quietLog())
		if err != nil {
			return err
		}
		defer u.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return u.Start(ctx)
	}
	if err := start(UpstreamConfig{Name: "a", URL: srv.URL}); err == nil {
		t.Fatal("an unknown CA was trusted")
	}
	if err := start(UpstreamConfig{Name: "a", URL: srv.URL, TrustedCA: ca}); err != nil {
		t.Fatalf("with ca_file: %v", err)
	}
}
