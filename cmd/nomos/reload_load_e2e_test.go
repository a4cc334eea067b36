package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// postMCP sends one JSON-RPC request on an existing session without
// touching testing.T, so it can run in a goroutine.
func postMCP(url, key, session, body string) (int, map[string]any, error) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		data = lastSSEData(data)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		return resp.StatusCode, nil, fmt.Errorf("non-JSON answer %d: %s", resp.StatusCode, data)
	}
	return resp.StatusCode, out, nil
}

func toolCall(tool, args string) string {
	return `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `}}`
}

// load sends HTTP actions and MCP calls on a connected session until
// stopped, remembering what it sent and every failure.
type load struct {
	mu       sync.Mutex
	httpIDs  []string
	mcpCalls int
	failures []string
	stop     chan struct{}
	done     chan struct{}
}

func startLoad(t *testing.T, api client, mcpURL, session string) *load {
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; i < 400; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			id := fmt.Sprintf("load-%d", i)
			raw, _ := json.Marshal(envelope(id, "orders.list", "shop://orders/all", nil))
			req := api.request("/action", raw)
			resp, err := http.DefaultClient.Do(req)
			l.note(id, err, resp, true)
			code, out, err := postMCP(mcpURL, "alice-key", session, toolCall("lookup", fmt.Sprintf(`{"id":"%s"}`, id)))
			text, isErr := toolText(out)
			if err == nil && (code != 200 || isErr || !strings.Contains(text, "looked up "+id)) {
				err = fmt.Errorf("MCP lookup %s: %d %q", id, code, text)
			}
			l.note(id, err, nil, false)
		}
	}()
	return l
}

func (l *load) note(id string, err error, resp *http.Response, isHTTP bool) {
	if resp != nil {
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != 200 || out["decision"] != "ALLOW" {
			err = fmt.Errorf("HTTP action %s: %d %v", id, resp.StatusCode, out)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failures = append(l.failures, err.Error())
		return
	}
	if isHTTP {
		l.httpIDs = append(l.httpIDs, id)
	} else {
		l.mcpCalls++
	}
}

// waitMore waits until the load has had n more answers, so each reload
// happens with traffic on both doors.
func (l *load) waitMore(t *testing.T, n int) {
	t.Helper()
	count := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.httpIDs) + l.mcpCalls + len(l.failures)
	}
	target := count() + n
	for deadline := time.Now().Add(20 * time.Second); count() < target; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the load stalled at %d answers", count())
		}
	}
}

func (l *load) finish() ([]string, int, []string) {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.httpIDs, l.mcpCalls, l.failures
}

// TestReloadUnderLoad changes the policy while HTTP actions and MCP calls
// keep arriving and MCP sessions stay connected. Refused reloads (a bundle
// that does not parse, a runtime block that does not validate) keep the
// old config serving; the good one applies to new requests only, while a
// call in flight since before it finishes on the old policy; sessions
// survive; no audit event is lost; and runtime.reload records the change.
func TestReloadUnderLoad(t *testing.T) {
	s, alice := startOps(t, "")
	url := s.base + "/mcp"
	holder := &mcpClient{t: t, url: url, key: "alice-key"}
	holder.initialize()
	worker := &mcpClient{t: t, url: url, key: "alice-key"}
	worker.initialize()
	oldHash := startupHash(t, s.auditDB())

	type answer struct {
		code int
		out  map[string]any
		err  error
	}
	inflight := make(chan answer, 1)
	go func() {
		code, out, err := postMCP(url, "alice-key", holder.session, toolCall("hold", `{"name":"inflight"}`))
		inflight <- answer{code, out, err}
	}()
	waitFile(t, filepath.Join(s.dir, "gate", "inflight.held"))
	l := startLoad(t, alice, url, worker.session)

	reload := func() (string, int) {
		l.waitMore(t, 4)
		_, errOut, code := runCLI(t, s.dir, "reload", "--force", "--config", "Caddyfile", "--adapter", "caddyfile", "--address", s.admin)
		return errOut, code
	}
	good, _ := os.ReadFile(filepath.Join(s.dir, "Caddyfile"))
	writeFiles(t, s.dir, map[string]string{"ops.yaml": strings.Replace(opsBundle, "decision: ALLOW", "decision: MAYBE", 1)})
	if errOut, code := reload(); code == 0 || !strings.Contains(errOut, "MAYBE") {
		t.Fatalf("bad bundle accepted (code %d): %s", code, errOut)
	}
	writeFiles(t, s.dir, map[string]string{"ops.yaml": opsBundle,
		"Caddyfile": strings.Replace(string(good), "rate_limits {", "rate_limits {\n\t\t\t\tevict_after_seconds 1", 1)})
	if errOut, code := reload(); code == 0 || !strings.Contains(errOut, "evict_after_seconds") {
		t.Fatalf("bad runtime block accepted (code %d): %s", code, errOut)
	}
	holdNeedsApproval := opsBundle + "  - id: hold-needs-approval\n    action_type: mcp.call\n    resource: \"mcp://ops/hold\"\n    decision: REQUIRE_APPROVAL\n"
	writeFiles(t, s.dir, map[string]string{"ops.yaml": holdNeedsApproval, "Caddyfile": string(good)})
	if errOut, code := reload(); code != 0 {
		t.Fatalf("good reload refused: %s", errOut)
	}
	l.waitMore(t, 4)

	// New requests see the new policy, on the sessions opened before.
	code, out := holder.call("hold", `{"name":"after"}`)
	if text, isErr := toolText(out); code != 200 || !isErr || !strings.Contains(text, "REQUIRE_APPROVAL") {
		t.Fatalf("hold after the reload: %d %q", code, text)
	}
	// The call admitted under the old policy still completes.
	writeFiles(t, s.dir, map[string]string{"gate/inflight.release": ""})
	a := <-inflight
	if text, isErr := toolText(a.out); a.err != nil || a.code != 200 || isErr || text != "released inflight" {
		t.Fatalf("in-flight call across the reload: %v %d %q", a.err, a.code, text)
	}
	httpIDs, mcpCalls, failures := l.finish()
	if len(failures) > 0 {
		t.Fatalf("%d requests failed during the reloads, first: %s", len(failures), failures[0])
	}
	if len(httpIDs) == 0 || mcpCalls == 0 {
		t.Fatalf("no load ran: %d HTTP, %d MCP", len(httpIDs), mcpCalls)
	}
	t.Logf("load during the reloads: %d HTTP actions, %d MCP calls", len(httpIDs), mcpCalls)
	wantMetrics(t, scrape(t, s.admin), map[string]float64{`nomos_audit_dropped_total`: 0, `nomos_mcp_sessions`: 2})

	s.stop()
	db := s.auditDB()
	checkReloadEvidence(t, db, oldHash)
	checkInflightOnOldPolicy(t, db, oldHash)
	checkNothingLost(t, db, httpIDs, mcpCalls)
	if out, errOut, code := runCLI(t, s.dir, "audit", "verify", "--db", db); code != 0 {
		t.Fatalf("audit chain broken across reloads: %s %s", out, errOut)
	}
}

// startupHash is the policy hash the startup runtime.reload event
// records. Caddy may start the HTTP server before the nomos app records
// it, so it is waited for.
func startupHash(t *testing.T, db string) string {
	t.Helper()
	d := openDB(t, db)
	defer d.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var h string
		err := d.QueryRow(`SELECT json_extract(json, '$.executor_metadata.new_policy_bundle_hashes.default') FROM audit_events
			WHERE event_type = 'runtime.reload' AND json_extract(json, '$.executor_metadata.trigger') = 'startup'`).Scan(&h)
		if err == nil && h != "" {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("no startup runtime.reload event: %v", err)
		}
	}
}

func checkReloadEvidence(t *testing.T, db, oldHash string) {
	t.Helper()
	d := openDB(t, db)
	defer d.Close()
	var oldRecorded, newRecorded, changed string
	err := d.QueryRow(`SELECT json_extract(json, '$.executor_metadata.old_policy_bundle_hashes.default'),
		json_extract(json, '$.executor_metadata.new_policy_bundle_hashes.default'),
		json_extract(json, '$.executor_metadata.policy_changed')
		FROM audit_events WHERE event_type = 'runtime.reload' AND json_extract(json, '$.decision') = 'SUCCESS'
		AND json_extract(json, '$.executor_metadata.trigger') = 'reload'`).Scan(&oldRecorded, &newRecorded, &changed)
	if err != nil {
		t.Fatalf("runtime.reload for the good reload: %v", err)
	}
	if oldRecorded != oldHash || newRecorded == oldHash || changed != "1" {
		t.Fatalf("runtime.reload: old %s new %s changed %s; the served hash was %s", oldRecorded, newRecorded, changed, oldHash)
	}
	var reason string
	if err := d.QueryRow(`SELECT json_extract(json, '$.reason') FROM audit_events WHERE event_type = 'runtime.reload'
		AND json_extract(json, '$.decision') = 'FAILURE'`).Scan(&reason); err != nil || !strings.Contains(reason, "evict_after_seconds") {
		t.Fatalf("refused reload not recorded: %q %v", reason, err)
	}
}

// checkInflightOnOldPolicy: the held call was decided and completed under
// the policy in force when it arrived.
func checkInflightOnOldPolicy(t *testing.T, db, oldHash string) {
	t.Helper()
	d := openDB(t, db)
	defer d.Close()
	rows, err := d.Query(`SELECT event_type, json_extract(json, '$.decision'), json_extract(json, '$.policy_bundle_hash'),
		coalesce(json_extract(json, '$.result_classification'), '') FROM audit_events
		WHERE json_extract(json, '$.resource_normalized') = 'mcp://ops/hold'
		AND json_extract(json, '$.params_redacted_summary') LIKE '%inflight%' AND event_type IN ('action.decision', 'action.completed')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var typ, decision, hash, class string
		if err := rows.Scan(&typ, &decision, &hash, &class); err != nil {
			t.Fatal(err)
		}
		if decision != "ALLOW" || hash != oldHash || (typ == "action.completed" && class != "SUCCESS") {
			t.Fatalf("in-flight %s: %s %s %s, want ALLOW under %s", typ, decision, hash, class, oldHash)
		}
		seen[typ] = true
	}
	if !seen["action.decision"] || !seen["action.completed"] {
		t.Fatalf("in-flight call events: %v", seen)
	}
}

// checkNothingLost: every request the load got an answer for has its whole
// trace in the audit log.
func checkNothingLost(t *testing.T, db string, httpIDs []string, mcpCalls int) {
	t.Helper()
	d := openDB(t, db)
	defer d.Close()
	for _, id := range httpIDs {
		var n int
		if err := d.QueryRow(`SELECT count(DISTINCT event_type) FROM audit_events WHERE action_id = ?
			AND event_type IN ('trace.start', 'action.decision', 'action.completed', 'trace.end')`, id).Scan(&n); err != nil || n != 4 {
			t.Fatalf("HTTP action %s: %d of 4 event types audited (%v)", id, n, err)
		}
	}
	var decisions, completions int
	_ = d.QueryRow(`SELECT count(*) FROM audit_events WHERE event_type = 'action.decision' AND json_extract(json, '$.resource_normalized') = 'mcp://ops/lookup'`).Scan(&decisions)
	_ = d.QueryRow(`SELECT count(*) FROM audit_events WHERE event_type = 'action.completed' AND json_extract(json, '$.resource_normalized') = 'mcp://ops/lookup'`).Scan(&completions)
	if decisions < mcpCalls || completions < mcpCalls {
		t.Fatalf("MCP lookups answered %d, audited decisions %d, completions %d", mcpCalls, decisions, completions)
	}
}
