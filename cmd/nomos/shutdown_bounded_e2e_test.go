package main

import (
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type mcpAnswer struct {
	code int
	out  map[string]any
	err  error
}

// holdCall starts an MCP tools/call that the upstream fixture answers only
// once the test releases it, and waits until the upstream has it.
func holdCall(t *testing.T, s *server, name string) (*mcpClient, chan mcpAnswer) {
	t.Helper()
	c := &mcpClient{t: t, url: s.base + "/mcp", key: "alice-key"}
	c.initialize()
	done := make(chan mcpAnswer, 1)
	go func() {
		code, out, err := postMCP(c.url, c.key, c.session, toolCall("hold", `{"name":"`+name+`"}`))
		done <- mcpAnswer{code, out, err}
	}()
	waitFile(t, filepath.Join(s.dir, "gate", name+".held"))
	return c, done
}

// waitRefusing waits until the listener no longer accepts connections:
// shutdown has begun.
func waitRefusing(t *testing.T, s *server) {
	t.Helper()
	host := strings.TrimPrefix(s.base, "http://")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		conn, err := net.DialTimeout("tcp", host, time.Second)
		if err != nil {
			return
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after SIGTERM")
		}
	}
}

func waitExit(t *testing.T, s *server, bound time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(bound):
		t.Fatalf("nomos did not exit within %v of SIGTERM; logs:\n%s", bound, s.logs.String())
	}
}

// TestShutdownDrainsInFlightAndRefusesNew: after SIGTERM, new connections
// are refused while a governed MCP call already in flight runs to its end
// and is fully audited; then the process exits.
func TestShutdownDrainsInFlightAndRefusesNew(t *testing.T) {
	s, alice := startOps(t, "")
	_, inflight := holdCall(t, s, "drain")
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitRefusing(t, s)
	if resp, err := http.DefaultClient.Do(alice.request("/action", []byte(`{}`))); err == nil {
		resp.Body.Close()
		t.Fatalf("a new request was served during shutdown: %d", resp.StatusCode)
	}
	writeFiles(t, s.dir, map[string]string{"gate/drain.release": ""})
	a := <-inflight
	if text, isErr := toolText(a.out); a.err != nil || a.code != 200 || isErr || text != "released drain" {
		t.Fatalf("in-flight call during shutdown: %v %d %q", a.err, a.code, text)
	}
	waitExit(t, s, 15*time.Second)
	d := openDB(t, s.auditDB())
	defer d.Close()
	var n int
	err := d.QueryRow(`SELECT count(*) FROM audit_events WHERE json_extract(json, '$.resource_normalized') = 'mcp://ops/hold'
		AND ((event_type = 'action.decision' AND json_extract(json, '$.decision') = 'ALLOW')
		  OR (event_type = 'action.completed' AND json_extract(json, '$.result_classification') = 'SUCCESS'))`).Scan(&n)
	if err != nil || n != 2 {
		t.Fatalf("in-flight call's decision and completion audited: %d (%v)", n, err)
	}
}

// TestShutdownIsBounded: a call that never finishes does not keep the
// process alive past the grace period (5s in the test's Caddyfile).
func TestShutdownIsBounded(t *testing.T) {
	s, _ := startOps(t, "")
	_, inflight := holdCall(t, s, "forever")
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, s, 15*time.Second)
	if a := <-inflight; a.err == nil && a.code == 200 {
		if text, isErr := toolText(a.out); !isErr {
			t.Fatalf("the held call cannot have succeeded: %q", text)
		}
	}
}
