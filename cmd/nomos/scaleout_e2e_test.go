package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// scaleOut is examples/scale-out/run.sh running on free loopback ports:
// Redis, two replicas and the load balancer.
type scaleOut struct {
	t                  *testing.T
	dir                string
	lb, r1, r2         string
	redisPort, r1Admin int
	pids               map[string]int // redis-server, replica 1, replica 2
	out                *lockedBuffer
	redis              *exec.Cmd // a redis-server the test restarted itself
}

var scaleOutPID = regexp.MustCompile(`(?m)^(redis-server|replica 1|replica 2|load balancer) pid (\d+)`)

// startScaleOut runs the example as committed and waits for its `ready`.
func startScaleOut(t *testing.T) *scaleOut {
	t.Helper()
	bin := nomosBinary(t)
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatal("redis-server is not installed: apt-get install redis-server (make test does this)")
	}
	retail := goBuild(t, "github.com/caddy-nomos/nomos/examples/retail/retail-mcp")
	ports := []int{freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)}
	so := &scaleOut{t: t, dir: t.TempDir(), out: new(lockedBuffer), pids: map[string]int{}, redisPort: ports[0],
		lb: fmt.Sprintf("http://127.0.0.1:%d", ports[1]), r1: fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
		r2: fmt.Sprintf("http://127.0.0.1:%d", ports[3]), r1Admin: ports[5]}
	cmd := exec.Command("bash", "../../examples/scale-out/run.sh")
	cmd.Env = append(os.Environ(), "NOMOS_BIN="+bin, "NOMOS_RETAIL_CMD="+retail, "NOMOS_SCALE_DIR="+so.dir,
		fmt.Sprintf("NOMOS_SCALE_REDIS_PORT=%d", ports[0]), fmt.Sprintf("NOMOS_SCALE_LB_PORT=%d", ports[1]),
		fmt.Sprintf("NOMOS_SCALE_R1_PORT=%d", ports[2]), fmt.Sprintf("NOMOS_SCALE_R2_PORT=%d", ports[3]),
		fmt.Sprintf("NOMOS_SCALE_LB_ADMIN_PORT=%d", ports[4]), fmt.Sprintf("NOMOS_SCALE_R1_ADMIN_PORT=%d", ports[5]),
		fmt.Sprintf("NOMOS_SCALE_R2_ADMIN_PORT=%d", ports[6]))
	cmd.Stdout, cmd.Stderr = so.out, so.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { so.stop(cmd) })
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(so.out.String(), "ready\n") {
		if out := so.out.String(); time.Now().After(deadline) || strings.Contains(out, "exited") || strings.Contains(out, "not ready") {
			t.Fatalf("run.sh not ready:\n%s\nreplica 1:\n%s\nreplica 2:\n%s\nload balancer:\n%s", so.out.String(),
				so.logs("replica1"), so.logs("replica2"), so.logs("lb"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, m := range scaleOutPID.FindAllStringSubmatch(so.out.String(), -1) {
		so.pids[m[1]], _ = strconv.Atoi(m[2])
	}
	return so
}

// stop sends run.sh SIGTERM, which stops everything it started.
func (so *scaleOut) stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
	}
	if so.redis != nil {
		_ = so.redis.Process.Kill()
		_ = so.redis.Wait()
	}
	if !strings.Contains(so.out.String(), "stopped") {
		so.t.Errorf("run.sh did not report stopping everything:\n%s", so.out.String())
	}
}

func (so *scaleOut) logs(name string) string {
	data, _ := os.ReadFile(filepath.Join(so.dir, name, "nomos.log"))
	return string(data)
}

// kill signals a process run.sh started and waits until it is gone.
func (so *scaleOut) kill(name string, sig syscall.Signal) {
	so.t.Helper()
	pid := so.pids[name]
	if pid == 0 {
		so.t.Fatalf("no pid for %s in:\n%s", name, so.out.String())
	}
	_ = syscall.Kill(pid, sig)
	deadline := time.Now().Add(20 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			so.t.Fatalf("%s (pid %d) did not exit", name, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restartRedis starts an empty redis-server on the example's port, as an
// operator bringing it back would.
func (so *scaleOut) restartRedis() {
	so.t.Helper()
	so.redis = exec.Command("redis-server", "--port", strconv.Itoa(so.redisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", so.t.TempDir())
	if err := so.redis.Start(); err != nil {
		so.t.Fatal(err)
	}
}

// Demo credentials of the Makefile, which run.sh uses.
func alice(base string) client {
	return client{base: base, apiKey: "dev-alice-key", agent: "demo-agent", secret: "dev-agent-secret", principal: "alice"}
}

func reviewer(base string) client {
	return client{base: base, apiKey: "dev-reviewer-key", principal: "reviewer"}
}

func refund(id, order string, amount int, approval string) map[string]any {
	env := envelope(id, "payments.refund", "payments://shop/orders/"+order, map[string]any{"amount": amount, "currency": "USD"})
	if approval != "" {
		env["context"] = map[string]any{"extensions": map[string]any{"approval": map[string]any{"approval_id": approval}}}
	}
	return env
}

// pendingApproval asks for a large refund on base and returns its approval.
func pendingApproval(t *testing.T, base, id, order string) string {
	t.Helper()
	code, resp := alice(base).post(t, "/action", refund(id, order, 250, ""))
	approval, _ := resp["approval_id"].(string)
	if code != 200 || resp["decision"] != "REQUIRE_APPROVAL" || approval == "" {
		t.Fatalf("large refund: %d %v", code, resp)
	}
	return approval
}

func approve(t *testing.T, base, approval string) {
	t.Helper()
	code, resp := reviewer(base).post(t, "/approvals/decide", map[string]any{"approval_id": approval, "decision": "APPROVE"})
	if code != 200 || resp["status"] != "APPROVED" {
		t.Fatalf("approve on %s: %d %v", base, code, resp)
	}
}

// TestScaleOut runs examples/scale-out/run.sh and checks what the replicas
// share: approvals, single use, signature nonces, the report index and MCP
// sessions, and that losing Redis denies (audited) and recovers.
func TestScaleOut(t *testing.T) {
	so := startScaleOut(t)

	t.Run("approval created on one replica, decided on the other, used on the first", func(t *testing.T) {
		approval := pendingApproval(t, so.r1, "so-refund-1", "1001")
		approve(t, so.r2, approval)
		code, resp := alice(so.r1).post(t, "/action", refund("so-refund-1", "1001", 250, approval))
		if code != 200 || resp["decision"] != "ALLOW" || resp["reason"] != "allow_by_approval" {
			t.Fatalf("retry on replica 1: %d %v", code, resp)
		}
	})

	t.Run("single use holds across replicas under concurrent retries", func(t *testing.T) {
		approval := pendingApproval(t, so.r2, "so-refund-2", "1002")
		approve(t, so.r1, approval)
		var wg sync.WaitGroup
		answers := make([]map[string]any, 4)
		for i := range answers {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				base := []string{so.r1, so.r2}[i%2]
				_, answers[i] = alice(base).post(t, "/action", refund("so-refund-2", "1002", 250, approval))
			}(i)
		}
		wg.Wait()
		allowed := 0
		for _, a := range answers {
			if a["decision"] == "ALLOW" {
				allowed++
			}
		}
		if allowed != 1 {
			t.Fatalf("%d of %d concurrent retries allowed on a single-use approval: %v", allowed, len(answers), answers)
		}
	})

	t.Run("a signature replayed on the other replica is refused", func(t *testing.T) {
		body, _ := json.Marshal(refund("so-refund-3", "1003", 20, ""))
		first := alice(so.r1).request("/action", body)
		code, resp := do(t, first)
		if code != 200 || resp["decision"] != "ALLOW" {
			t.Fatalf("original on replica 1: %d %v", code, resp)
		}
		replay, _ := http.NewRequest(http.MethodPost, so.r2+"/action", bytes.NewReader(body))
		replay.Header = first.Header.Clone()
		code, resp = do(t, replay)
		if reason, _ := resp["reason"].(string); code != 401 || !strings.Contains(reason, "replayed") {
			t.Fatalf("replay on replica 2: %d %v", code, resp)
		}
	})

	t.Run("an action authorized on one replica is reported to the other", func(t *testing.T) {
		code, resp := alice(so.r1).post(t, "/action", refund("so-refund-4", "1004", 30, ""))
		if code != 200 || resp["decision"] != "ALLOW" {
			t.Fatalf("small refund: %d %v", code, resp)
		}
		report := map[string]any{"action_id": "so-refund-4", "trace_id": "trace-so-refund-4", "outcome": "SUCCEEDED"}
		if code, resp = alice(so.r2).post(t, "/actions/report", report); code != 200 || resp["recorded"] != true {
			t.Fatalf("report on replica 2: %d %v", code, resp)
		}
		other := client{base: so.r2, apiKey: "dev-reviewer-key", agent: "demo-agent", secret: "dev-agent-secret", principal: "reviewer"}
		if code, _ = other.post(t, "/actions/report", report); code != 404 {
			t.Fatalf("report by another principal: %d, want 404", code)
		}
	})

	t.Run("a rate limit holds across both replicas", func(t *testing.T) {
		// orders-read: burst 10, refill 10 per minute, shared by the replicas.
		allowed, limited := 0, 0
		start := time.Now()
		for i := 0; i < 30; i++ {
			base := []string{so.r1, so.r2}[i%2]
			code, resp := alice(base).post(t, "/action", envelope(fmt.Sprintf("so-read-%d", i), "orders.read", "shop://orders/1001", nil))
			reason, _ := resp["reason"].(string)
			switch {
			case code == 200 && resp["decision"] == "ALLOW":
				allowed++
			case code == 200 && resp["decision"] == "DENY" && strings.HasPrefix(reason, "RATE_LIMIT_EXCEEDED"):
				limited++
			default:
				t.Fatalf("read %d on %s: %d %v", i, base, code, resp)
			}
		}
		// At most the burst plus what refilled while the calls ran; with a
		// bucket per replica it would be the burst twice (20).
		most := 10 + int(math.Ceil(time.Since(start).Minutes()*10))
		if most >= 20 {
			t.Fatalf("30 calls took %s: too slow to tell one shared bucket from two", time.Since(start))
		}
		if allowed < 10 || allowed > most || limited == 0 {
			t.Fatalf("allowed %d (at most %d), rate limited %d of 30 with a shared burst of 10", allowed, most, limited)
		}
	})

	t.Run("redis killed: denied as state_unavailable, audited, then recovery", func(t *testing.T) {
		testRedisOutage(t, so)
	})

	t.Run("an MCP session through the load balancer", func(t *testing.T) {
		testMCPThroughLB(t, so)
	})
}

func testRedisOutage(t *testing.T, so *scaleOut) {
	s := mcpInitialize(t, so.r1, "dev-alice-key")
	big := map[string]any{"order_id": "1001", "amount": 250}
	if text, _ := s.call(t, "refund_order", big); !strings.Contains(text, "REQUIRE_APPROVAL") {
		t.Fatalf("before the outage: %s", text)
	}
	so.kill("redis-server", syscall.SIGKILL)

	denied := 0
	for i := 0; i < 6; i++ {
		text, isErr := s.call(t, "refund_order", big)
		if !isErr || !strings.Contains(text, "state_unavailable") {
			t.Fatalf("refund with redis down: isError=%v %s", isErr, text)
		}
		denied++
	}
	if text, isErr := s.call(t, "lookup_order", map[string]any{"order_id": "1001"}); isErr {
		t.Errorf("a decision that needs no shared state failed with redis down: %s", text)
	}
	code, resp := alice(so.r1).post(t, "/action", refund("so-outage-1", "1001", 20, ""))
	if reason, _ := resp["reason"].(string); code != 503 || !strings.HasPrefix(reason, "state_unavailable") {
		t.Errorf("signed request with redis down: %d %v", code, resp)
	}
	code, resp = reviewer(so.r1).post(t, "/approvals/decide", map[string]any{"approval_id": "apr_unknown", "decision": "APPROVE"})
	if reason, _ := resp["reason"].(string); code != 503 || !strings.HasPrefix(reason, "state_unavailable") {
		t.Errorf("approval decision with redis down: %d %v", code, resp)
	}
	if st, _, body := mcpPost(t, so.r1, "dev-alice-key", "", initializeMessage); st != 503 || !strings.Contains(body, "state_unavailable") {
		t.Errorf("initialize with redis down: %d %s", st, body)
	}
	m := scrape(t, "127.0.0.1:"+strconv.Itoa(so.r1Admin))
	if v, ok := m[`nomos_state_breaker_state{state="closed"}`]; !ok || v != 0 {
		t.Errorf(`nomos_state_breaker_state{state="closed"} = %v (present %v) with redis down, want 0`, v, ok)
	}

	so.restartRedis()
	deadline := time.Now().Add(60 * time.Second)
	for {
		text, _ := s.call(t, "refund_order", big)
		if strings.Contains(text, "REQUIRE_APPROVAL") {
			break
		}
		if !strings.Contains(text, "state_unavailable") || time.Now().After(deadline) {
			t.Fatalf("no recovery after redis came back: %s", text)
		}
		denied++
		time.Sleep(200 * time.Millisecond)
	}
	audited := 0
	for _, line := range strings.Split(so.logs("replica1"), "\n") {
		var entry struct {
			Logger string `json:"logger"`
			Event  struct {
				EventType string `json:"event_type"`
				auditDecision
			} `json:"event"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil || entry.Logger != "nomos.audit" || entry.Event.EventType != "action.decision" {
			continue
		}
		d := entry.Event.auditDecision
		if d.Resource == "mcp://retail/refund_order" && d.Decision == "DENY" && d.Reason == "state_unavailable" {
			audited++
		}
	}
	if audited != denied {
		t.Fatalf("%d refunds denied as state_unavailable, %d such decisions audited", denied, audited)
	}
}

// testMCPThroughLB drives one session of the official TypeScript SDK
// client (examples/clients/ts/session.mjs) through the load balancer.
func testMCPThroughLB(t *testing.T, so *scaleOut) {
	c := startTSSession(t, so.lb, "dev-alice-key")
	sid := c.sessionID
	lookup := `call lookup_order {"order_id":"1002"}`
	for i := 0; i < 50; i++ {
		if out := c.do(t, lookup); out.Error != "" || out.Result.IsError || !strings.Contains(out.text(), "order 1002") || out.SessionID != sid {
			t.Fatalf("call %d through the load balancer: %+v", i, out)
		}
	}
	for _, base := range []string{so.r1, so.r2} {
		st, _, body := mcpPost(t, base, "dev-reviewer-key", sid, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)
		if st != 403 || !strings.Contains(body, "session_identity_mismatch") {
			t.Errorf("another principal on %s: %d %s", base, st, body)
		}
	}
	owner := "replica 2"
	if st := mcpPostForwarded(t, so.r1, sid); st == 200 {
		owner = "replica 1"
	}
	so.kill(owner, syscall.SIGTERM)
	if out := c.do(t, lookup); out.Status != 404 {
		t.Fatalf("session of a stopped replica: %+v, want HTTP 404", out)
	}
	again := c.do(t, "reconnect")
	if again.SessionID == "" || again.SessionID == sid {
		t.Fatalf("reconnect: %+v", again)
	}
	if out := c.do(t, lookup); out.Error != "" || out.Result.IsError || out.SessionID != again.SessionID {
		t.Fatalf("new session after the owner stopped: %+v", out)
	}
	c.do(t, "exit")
}

// tsSession is session.mjs running: commands in, one JSON line out each.
type tsSession struct {
	stdin     io.WriteCloser
	lines     *bufio.Scanner
	sessionID string
}

type tsSessionOutput struct {
	SessionID string `json:"session_id"`
	Result    struct {
		Content []struct{ Text string } `json:"content"`
		IsError bool                    `json:"isError"`
	} `json:"result"`
	Error  string `json:"error"`
	Status int    `json:"status"`
}

func (o tsSessionOutput) text() string {
	var parts []string
	for _, c := range o.Result.Content {
		parts = append(parts, c.Text)
	}
	return strings.Join(parts, "\n")
}

func startTSSession(t *testing.T, base, key string) *tsSession {
	t.Helper()
	tools := needNodeTools(t)
	dir := t.TempDir()
	for _, f := range []string{"session.mjs", "package.json"} {
		data, err := os.ReadFile(filepath.Join("../../examples/clients/ts", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(tools.nodeModules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := exec.CommandContext(ctx, tools.node, filepath.Join(dir, "session.mjs"), "--url", base+"/mcp")
	cmd.Env = append(os.Environ(), "NOMOS_MCP_TOKEN="+key)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	stderr := new(lockedBuffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
		cancel()
		if t.Failed() {
			t.Logf("session.mjs stderr: %s", stderr.String())
		}
	})
	s := &tsSession{stdin: stdin, lines: bufio.NewScanner(stdout)}
	s.lines.Buffer(make([]byte, 1<<20), 1<<20)
	first := s.read(t)
	if first.SessionID == "" {
		t.Fatalf("session.mjs did not connect: %+v; stderr: %s", first, stderr.String())
	}
	s.sessionID = first.SessionID
	return s
}

func (s *tsSession) read(t *testing.T) tsSessionOutput {
	t.Helper()
	if !s.lines.Scan() {
		t.Fatalf("session.mjs ended: %v", s.lines.Err())
	}
	var out tsSessionOutput
	if err := json.Unmarshal(s.lines.Bytes(), &out); err != nil {
		t.Fatalf("session.mjs printed %q: %v", s.lines.Text(), err)
	}
	return out
}

// do sends one command and reads its answer ("exit" has none).
func (s *tsSession) do(t *testing.T, cmd string) tsSessionOutput {
	t.Helper()
	if _, err := io.WriteString(s.stdin, cmd+"\n"); err != nil {
		t.Fatal(err)
	}
	if cmd == "exit" {
		return tsSessionOutput{}
	}
	return s.read(t)
}

const initializeMessage = `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"scale-out-test","version":"1"}}}`

// mcpSession is a raw Streamable HTTP client session.
type mcpSession struct {
	base, key, id string
	next          int
}

func mcpInitialize(t *testing.T, base, key string) *mcpSession {
	t.Helper()
	st, h, body := mcpPost(t, base, key, "", initializeMessage)
	if st != 200 || h.Get("Mcp-Session-Id") == "" {
		t.Fatalf("initialize on %s: %d %s", base, st, body)
	}
	s := &mcpSession{base: base, key: key, id: h.Get("Mcp-Session-Id"), next: 1}
	if st, _, body := mcpPost(t, base, key, s.id, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); st != 202 {
		t.Fatalf("notifications/initialized: %d %s", st, body)
	}
	return s
}

// call runs tools/call and returns the result's text and isError.
func (s *mcpSession) call(t *testing.T, tool string, args map[string]any) (string, bool) {
	t.Helper()
	s.next++
	msg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": s.next, "method": "tools/call",
		"params": map[string]any{"name": tool, "arguments": args}})
	st, _, body := mcpPost(t, s.base, s.key, s.id, string(msg))
	if st != 200 {
		t.Fatalf("tools/call %s: %d %s", tool, st, body)
	}
	var resp struct {
		Result struct {
			Content []struct{ Text string } `json:"content"`
			IsError bool                    `json:"isError"`
		} `json:"result"`
		Error *struct{ Message string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatalf("tools/call %s: %v: %s", tool, err, body)
	}
	if resp.Error != nil {
		return resp.Error.Message, true
	}
	var parts []string
	for _, c := range resp.Result.Content {
		parts = append(parts, c.Text)
	}
	return strings.Join(parts, "\n"), resp.Result.IsError
}

// mcpPost sends one message and returns the status, headers and the JSON
// body (the first message of an event stream).
func mcpPost(t *testing.T, base, key, sid, msg string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(msg))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+key)
	if sid != "" {
		req.Header.Set("Mcp-Session-Id", sid)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				return resp.StatusCode, resp.Header, d
			}
		}
	}
	return resp.StatusCode, resp.Header, string(data)
}

// mcpPostForwarded asks base about sid as a forwarded request, which a
// replica answers only from its own sessions: 200 when it owns sid.
func mcpPostForwarded(t *testing.T, base, sid string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/list"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer dev-alice-key")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Nomos-Mcp-Forwarded", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
