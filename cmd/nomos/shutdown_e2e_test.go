package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdownFinishesInFlightActions sends SIGTERM while an action
// request is still arriving: the request must complete with its decision,
// its audit rows must be on disk, and only then may the process exit.
func TestGracefulShutdownFinishesInFlightActions(t *testing.T) {
	// Caddy's request metrics say when the handler holds the request.
	cf := strings.Replace(strings.Replace(gatewayCaddyfile, "{env.T_LIMIT}", "32", 1),
		"admin 127.0.0.1:{ADMIN}", "admin 127.0.0.1:{ADMIN}\n\tmetrics", 1)
	s := startServer(t, cf, map[string]string{"shop.yaml": shopBundle}, gatewayEnv...)
	agent := client{base: s.base, apiKey: "alice-key", agent: "shop-agent", secret: "agent-secret"}
	body, _ := json.Marshal(envelope("drain-1", "orders.read", "shop://orders/1", nil))
	req := agent.request("/action", body)
	host := strings.TrimPrefix(s.base, "http://")
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /action HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", host, len(body))
	for _, h := range []string{"Authorization", "X-Nomos-Agent-Id", "X-Nomos-Agent-Signature", "X-Nomos-Timestamp", "X-Nomos-Nonce"} {
		fmt.Fprintf(conn, "%s: %s\r\n", h, req.Header.Get(h))
	}
	fmt.Fprintf(conn, "\r\n%s", body[:10])
	waitFor(t, "the handler reads the body", func() bool { return inFlight(s) == 1 })
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "shutdown under way", func() bool { return strings.Contains(s.logs.String(), "servers shutting down") })
	if _, err := conn.Write(body[10:]); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("in-flight request lost during shutdown: %v\n%s", err, s.logs.String())
	}
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 || out["decision"] != "ALLOW" {
		t.Fatalf("in-flight request: %d %v", resp.StatusCode, out)
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("nomos did not exit after SIGTERM")
	}
	assertEventTypes(t, s.auditDB(), "drain-1", "action.decision", "action.completed", "trace.end")
}

// inFlight is Caddy's count of requests its HTTP handlers hold (the
// admin endpoint's own scrape is not among them); -1 when unreadable.
func inFlight(s *server) int {
	resp, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "caddy_http_requests_in_flight{") {
			var n float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &n); err == nil {
				total += n
			}
		}
	}
	return int(total)
}

// waitFor polls cond until it holds: the test waits on the event itself,
// bounded so a regression fails instead of hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
