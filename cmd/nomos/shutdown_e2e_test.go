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
	s, agent, _ := startGateway(t, 32)
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
	time.Sleep(200 * time.Millisecond) // let the server start reading the body
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // shutdown is now under way
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
