package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReloadFailsClosed reloads a running gateway three times: a bundle
// that does not parse and an unknown subdirective are refused with a clear
// message while the old config keeps serving; a good change takes effect
// and the audit chain continues across it.
func TestReloadFailsClosed(t *testing.T) {
	s, agent, _ := startGateway(t, 32)
	read := envelope("reload-1", "orders.read", "shop://orders/1", nil)
	if _, resp := agent.post(t, "/action", read); resp["decision"] != "ALLOW" {
		t.Fatalf("before reload: %v", resp)
	}
	reload := func() (string, int) {
		_, errOut, code := runCLI(t, s.dir, "reload", "--force", "--config", "Caddyfile", "--adapter", "caddyfile", "--address", s.admin)
		return errOut, code
	}
	good, _ := os.ReadFile(filepath.Join(s.dir, "Caddyfile"))

	writeFiles(t, s.dir, map[string]string{"shop.yaml": strings.Replace(shopBundle, "decision: ALLOW", "decision: MAYBE", 1)})
	if errOut, code := reload(); code == 0 || !strings.Contains(errOut, "MAYBE") {
		t.Fatalf("bad bundle accepted (code %d): %s", code, errOut)
	}
	writeFiles(t, s.dir, map[string]string{"shop.yaml": shopBundle,
		"Caddyfile": strings.Replace(string(good), "environment dev", "environment dev\n\t\tcolour blue", 1)})
	if errOut, code := reload(); code == 0 || !strings.Contains(errOut, "colour") {
		t.Fatalf("unknown subdirective accepted (code %d): %s", code, errOut)
	}
	if _, resp := agent.post(t, "/action", read); resp["decision"] != "ALLOW" {
		t.Fatalf("old config stopped serving after refused reloads: %v", resp)
	}

	denyReads := strings.Replace(shopBundle, "  - id: allow-orders-read\n    action_type: orders.read\n    resource: \"shop://orders/**\"\n    decision: ALLOW",
		"  - id: allow-orders-read\n    action_type: orders.read\n    resource: \"shop://orders/**\"\n    decision: DENY", 1)
	writeFiles(t, s.dir, map[string]string{"shop.yaml": denyReads, "Caddyfile": string(good)})
	if errOut, code := reload(); code != 0 {
		t.Fatalf("good reload refused: %s", errOut)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, resp := agent.post(t, "/action", read)
		if resp["decision"] == "DENY" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new policy never took effect: %v", resp)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.stop()
	if out, errOut, code := runCLI(t, s.dir, "audit", "verify", "--db", s.auditDB()); code != 0 {
		t.Fatalf("audit chain broken across reload: %s %s", out, errOut)
	}
}

// collector is a webhook receiver that fails every other delivery.
type collector struct {
	mu       sync.Mutex
	calls    int
	received map[string]bool
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.calls%2 == 1 {
		http.Error(w, "collector hiccup", http.StatusServiceUnavailable)
		return
	}
	var batch struct {
		Events []struct {
			EventID string `json:"event_id"`
		} `json:"events"`
	}
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &batch); err != nil {
		http.Error(w, "bad batch", http.StatusBadRequest)
		return
	}
	for _, e := range batch.Events {
		c.received[e.EventID] = true
	}
}

func (c *collector) has(ids []string) (missing int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		if !c.received[id] {
			missing++
		}
	}
	return missing
}

// TestWebhookSinkLosesNothing sends actions while the collector fails half
// of the deliveries; every event stored in sqlite must reach it.
func TestWebhookSinkLosesNothing(t *testing.T) {
	col := &collector{received: map[string]bool{}}
	srv := httptest.NewServer(col)
	defer srv.Close()
	cf := strings.Replace(gatewayCaddyfile, "\t\t\tsink sqlite\n", "\t\t\tsink sqlite\n\t\t\tsink webhook "+srv.URL+"/events {\n\t\t\t\tbatch_size 5\n\t\t\t\tflush_interval 50ms\n\t\t\t}\n", 1)
	cf = strings.Replace(cf, "{env.T_LIMIT}", "32", 1)
	s := startServer(t, cf, map[string]string{"shop.yaml": shopBundle}, gatewayEnv...)
	agent := client{base: s.base, apiKey: "alice-key", agent: "shop-agent", secret: "agent-secret"}
	for i := 0; i < 12; i++ {
		agent.post(t, "/action", envelope("hook-"+string(rune('a'+i)), "orders.read", "shop://orders/1", nil))
	}
	ids := eventIDs(t, s.auditDB())
	if len(ids) < 48 {
		t.Fatalf("expected at least 48 events in sqlite, have %d", len(ids))
	}
	deadline := time.Now().Add(30 * time.Second)
	for col.has(ids) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events never reached the collector", col.has(ids), len(ids))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func eventIDs(t *testing.T, path string) []string {
	t.Helper()
	db := openDB(t, path)
	defer db.Close()
	rows, err := db.Query(`SELECT event_id FROM audit_events`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}
