package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const guardPolicy = `version: v1
rules:
  - id: read-api
    action_type: net.http_request
    resource: "url://127.0.0.1:*/api/**"
    decision: ALLOW
    params_match:
      method: GET
  - id: small-refund
    action_type: payments.refund
    resource: "payments://127.0.0.1/refunds"
    decision: ALLOW
    params_match:
      amount: {lte: 100}
  - id: large-refund
    action_type: payments.refund
    resource: "payments://127.0.0.1/refunds"
    decision: REQUIRE_APPROVAL
    params_match:
      amount: {gt: 100}
  - id: flaky
    action_type: net.http_request
    resource: "url://127.0.0.1:*/flaky/**"
    decision: ALLOW
  - id: down
    action_type: net.http_request
    resource: "url://127.0.0.1:*/down/**"
    decision: ALLOW
`

// guardCaddyfile puts nomos_guard in front of reverse_proxy for a local
// API ({env.T_UPSTREAM}) and for an address nothing listens on.
const guardCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	nomos {
		policy default {
			bundle guard.yaml
		}
		identity {
			api_key {env.T_ALICE_KEY} alice
			api_key {env.T_REVIEWER_KEY} reviewer
		}
		audit {
			sink sqlite
		}
		approvals {
			approvers reviewer
		}
		{RUNTIME}
	}
}

http://127.0.0.1:{PORT} {
	handle /refunds {
		nomos_guard {
			name refunds
			action_type payments.refund
			resource payments://{http.request.host}{nomos.request.escaped_path}
			body_param amount amount
			require_agent false
		}
		reverse_proxy {env.T_UPSTREAM}
	}
	handle /flaky/* {
		nomos_guard {
			name flaky
			require_agent false
			breaker {
				failure_threshold 2
				open_timeout 3s
			}
		}
		reverse_proxy {env.T_UPSTREAM}
	}
	handle /down/* {
		nomos_guard {
			name down
			require_agent false
			breaker {
				failure_threshold 2
			}
		}
		reverse_proxy {env.T_DOWN}
	}
	handle /approvals/decide {
		nomos_api
	}
	handle {
		nomos_guard {
			require_agent false
		}
		reverse_proxy {env.T_UPSTREAM}
	}
}
`

// guardUpstream is the local API behind the guard.
type guardUpstream struct {
	srv      *httptest.Server
	hits     atomic.Int64
	failing  atomic.Bool
	release  chan struct{} // lets the SSE handler send its second event
	lastAuth atomic.Value
}

const upstreamSecret = "ghp_0123456789abcdefghij0123456789abcdef"

func newGuardUpstream(t *testing.T) *guardUpstream {
	u := &guardUpstream{release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/orders", func(w http.ResponseWriter, r *http.Request) {
		u.lastAuth.Store(r.Header.Get("Authorization"))
		fmt.Fprintf(w, "order 7\ntoken: %s\n", upstreamSecret)
	})
	mux.HandleFunc("/api/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		fmt.Fprintf(w, "data: {\"n\":1,\"key\":\"%s\"}\n\n", upstreamSecret)
		f.Flush()
		select {
		case <-u.release:
		case <-time.After(10 * time.Second):
			return
		}
		fmt.Fprint(w, "data: {\"n\":2}\n\n")
		f.Flush()
	})
	mux.HandleFunc("/refunds", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "refunded %s", b)
	})
	mux.HandleFunc("/flaky/", func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		if u.failing.Load() {
			http.Error(w, "upstream broken", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "fine")
	})
	u.srv = httptest.NewServer(mux)
	t.Cleanup(u.srv.Close)
	return u
}

func startGuard(t *testing.T, runtime string) (*server, *guardUpstream) {
	t.Helper()
	u := newGuardUpstream(t)
	down := freePort(t)
	s := startServer(t, strings.Replace(guardCaddyfile, "{RUNTIME}", runtime, 1), map[string]string{"guard.yaml": guardPolicy},
		"T_ALICE_KEY=alice-key", "T_REVIEWER_KEY=reviewer-key",
		"T_UPSTREAM="+strings.TrimPrefix(u.srv.URL, "http://"), fmt.Sprintf("T_DOWN=127.0.0.1:%d", down))
	return s, u
}

// guardDo sends one request as alice and returns status, headers and body.
func guardDo(t *testing.T, method, url, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer alice-key")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestGuardE2E(t *testing.T) {
	s, u := startGuard(t, "")

	t.Run("allow redacts and hides Nomos credentials", func(t *testing.T) {
		code, h, body := guardDo(t, "GET", s.base+"/api/orders", "")
		if code != 200 || body != "order 7\ntoken: [REDACTED]\n" {
			t.Fatalf("%d %q", code, body)
		}
		if auth, _ := u.lastAuth.Load().(string); auth != "" {
			t.Errorf("upstream received Authorization %q", auth)
		}
		ev := completedAuditEvents(t, s.auditDB(), h.Get("X-Nomos-Action-Id"))
		done := ev["action.completed"]
		if ev["action.decision"].Decision != "ALLOW" || done.Classification != "SUCCESS" || done.Metadata["status_code"] != float64(200) {
			t.Fatalf("audit %v", ev)
		}
	})

	t.Run("deny", func(t *testing.T) {
		code, h, body := guardDo(t, "DELETE", s.base+"/api/orders", "")
		if code != 403 || body != `{"decision":"DENY","reason":"deny_by_default: denied by policy"}`+"\n" {
			t.Fatalf("%d %s", code, body)
		}
		if ev := auditEvents(t, s.auditDB(), h.Get("X-Nomos-Action-Id")); ev["action.decision"].Decision != "DENY" {
			t.Fatalf("audit %v", ev)
		}
	})

	t.Run("approval round trip", func(t *testing.T) {
		large := `{"amount":250}`
		code, h, body := guardDo(t, "POST", s.base+"/refunds", large)
		id := h.Get("X-Nomos-Approval-Id")
		if code != 403 || id == "" || !strings.Contains(body, `"approval_id":"`+id+`"`) {
			t.Fatalf("%d %s", code, body)
		}
		reviewer := client{base: s.base, apiKey: "reviewer-key"}
		if code, resp := reviewer.post(t, "/approvals/decide", map[string]any{"approval_id": id, "decision": "APPROVE"}); code != 200 {
			t.Fatalf("decide: %d %v", code, resp)
		}
		if code, _, _ := guardDo(t, "POST", s.base+"/refunds", `{"amount":999}`, "X-Nomos-Approval-Id", id); code != 403 {
			t.Fatalf("approval applied to another amount: %d", code)
		}
		code, _, body = guardDo(t, "POST", s.base+"/refunds", large, "X-Nomos-Approval-Id", id)
		if code != 200 || body != "refunded "+large {
			t.Fatalf("approved retry: %d %q", code, body)
		}
		if code, _, body := guardDo(t, "POST", s.base+"/refunds", `{"amount":`); code != 400 || !strings.Contains(body, "not valid JSON") {
			t.Fatalf("bad JSON: %d %s", code, body)
		}
	})

	t.Run("SSE event by event", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.base+"/api/events", nil)
		req.Header.Set("Authorization", "Bearer alice-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		r := bufio.NewReader(resp.Body)
		// The upstream holds its second event until the first arrived.
		first := readEvent(t, r)
		if first != `data: {"n":1,"key":"[REDACTED]"}` {
			t.Fatalf("first event %q", first)
		}
		close(u.release)
		if second := readEvent(t, r); second != `data: {"n":2}` {
			t.Fatalf("second event %q", second)
		}
	})

	t.Run("breaker opens on 5xx and recovers", func(t *testing.T) {
		u.failing.Store(true)
		for i := 0; i < 2; i++ {
			if code, _, _ := guardDo(t, "GET", s.base+"/flaky/x", ""); code != 500 {
				t.Fatalf("failure %d passed through as %d", i, code)
			}
		}
		code, h, body := guardDo(t, "GET", s.base+"/flaky/x", "")
		if code != 503 || !strings.Contains(body, "UPSTREAM_UNAVAILABLE") || u.hits.Load() != 2 {
			t.Fatalf("open breaker: %d %s (upstream hits %d)", code, body, u.hits.Load())
		}
		if ev := completedAuditEvents(t, s.auditDB(), h.Get("X-Nomos-Action-Id")); ev["action.completed"].Classification != "UPSTREAM_UNAVAILABLE" {
			t.Fatalf("open breaker audit %v", ev)
		}
		u.failing.Store(false)
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, _, _ = guardDo(t, "GET", s.base+"/flaky/x", "")
			if code == 200 || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if code != 200 || u.hits.Load() != 3 {
			t.Fatalf("no recovery: %d (upstream hits %d)", code, u.hits.Load())
		}
		if !strings.Contains(s.logs.String(), "guard breaker transition") {
			t.Error("breaker transitions not logged")
		}
	})

	t.Run("breaker counts transport failures", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if code, _, _ := guardDo(t, "GET", s.base+"/down/x", ""); code != 502 {
				t.Fatalf("dial failure %d answered %d", i, code)
			}
		}
		if code, _, body := guardDo(t, "GET", s.base+"/down/x", ""); code != 503 || !strings.Contains(body, "UPSTREAM_UNAVAILABLE") {
			t.Fatalf("open breaker: %d %s", code, body)
		}
	})

	t.Run("breaker state survives a reload", func(t *testing.T) {
		cfg, _ := os.ReadFile(filepath.Join(s.dir, "Caddyfile"))
		changed := strings.Replace(string(cfg), "\thandle /approvals/decide {", "\thandle /reloaded {\n\t\trespond \"v2\"\n\t}\n\thandle /approvals/decide {", 1)
		writeFiles(t, s.dir, map[string]string{"Caddyfile": changed})
		if _, errOut, code := runCLI(t, s.dir, "reload", "--config", "Caddyfile", "--adapter", "caddyfile", "--address", s.admin); code != 0 {
			t.Fatalf("reload: %s", errOut)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if code, _, body := guardDo(t, "GET", s.base+"/reloaded", ""); code == 200 && body == "v2" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the new config never took effect")
			}
			time.Sleep(50 * time.Millisecond)
		}
		// A fresh breaker would let the request through to a 502.
		if code, _, body := guardDo(t, "GET", s.base+"/down/x", ""); code != 503 || !strings.Contains(body, "UPSTREAM_UNAVAILABLE") {
			t.Fatalf("after reload: %d %s", code, body)
		}
	})
}

// readEvent reads one SSE event (its lines, without the blank one).
func readEvent(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v (have %q)", err, lines)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return strings.Join(lines, "\n")
		}
		lines = append(lines, line)
	}
}

func TestGuardE2ERateLimit(t *testing.T) {
	s, _ := startGuard(t, "runtime {\n\t\t\trate_limit 2 1m\n\t\t}")
	for i := 0; i < 2; i++ {
		if code, _, _ := guardDo(t, "GET", s.base+"/api/orders", ""); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	code, h, body := guardDo(t, "GET", s.base+"/api/orders", "")
	if code != 429 || h.Get("Retry-After") != "30" || !strings.HasPrefix(body, `{"decision":"DENY","reason":"RATE_LIMIT_EXCEEDED: retry after 30s`) {
		t.Fatalf("%d Retry-After=%q %s", code, h.Get("Retry-After"), body)
	}
}

// completedAuditEvents is auditEvents once the action's trace has ended:
// nomos_guard records completions just after the client has its answer.
func completedAuditEvents(t *testing.T, dbPath, actionID string) map[string]auditEvent {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := auditEvents(t, dbPath, actionID)
		if _, ok := ev["trace.end"]; ok || time.Now().After(deadline) {
			return ev
		}
		time.Sleep(10 * time.Millisecond)
	}
}
