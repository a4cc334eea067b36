package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
)

const auditKey = "e2e-audit-checkpoint-key-0123456789abcdef"

// keyedCaddyfile is the gateway with its sqlite audit signed by the key in
// checkpoint.
func keyedCaddyfile(checkpoint string) string {
	return strings.Replace(strings.Replace(gatewayCaddyfile, "{env.T_LIMIT}", "32", 1),
		"\t\t\tsink sqlite\n", "\t\t\tsink sqlite\n"+checkpoint, 1)
}

const hmacCheckpoint = "\t\t\tcheckpoint hmac-sha256 {\n\t\t\t\tkey {env.T_AUDIT_KEY}\n\t\t\t}\n"

// TestAuditKeyedChainCatchesForgery runs issue 8 #11's two reproductions
// against a log the gateway and the approvals CLI signed: a DENY rewritten
// as ALLOW with every later hash recomputed, and the tail truncated with
// sqlite_sequence fixed. The unkeyed chain accepts both; verify with the
// key refuses both.
func TestAuditKeyedChainCatchesForgery(t *testing.T) {
	env := append(slicesClone(gatewayEnv), "T_AUDIT_KEY="+auditKey)
	s := startServer(t, keyedCaddyfile(hmacCheckpoint), map[string]string{"shop.yaml": shopBundle}, env...)
	agent := client{base: s.base, apiKey: "alice-key", agent: "shop-agent", secret: "agent-secret"}
	agent.post(t, "/action", envelope("k-1", "orders.read", "shop://orders/1", nil))
	agent.post(t, "/action", envelope("k-2", "payments.compensate", "payments://shop/orders/2", map[string]any{"amount": 5}))
	_, pending := agent.post(t, "/action", envelope("k-3", "payments.refund", "payments://shop/orders/3", map[string]any{"amount": 500}))
	id, _ := pending["approval_id"].(string)
	// A second writer process appends to the same signed chain.
	if out, errOut, code := runCLIEnv(t, s.dir, []string{"T_AUDIT_KEY=" + auditKey}, "approvals", "approve", id, "--config", "Caddyfile", "--approver", "ops"); code != 0 {
		t.Fatalf("approve: %d %s %s", code, out, errOut)
	}
	agent.post(t, "/action", envelope("k-4", "orders.read", "shop://orders/4", nil))
	s.stop()
	keyArgs := []string{"audit", "verify", "--db", s.auditDB(), "--key-env", "T_AUDIT_KEY"}
	verify := func(args ...string) (string, string, int) {
		return runCLIEnv(t, s.dir, []string{"T_AUDIT_KEY=" + auditKey}, args...)
	}
	if out, errOut, code := verify(keyArgs...); code != 0 || !strings.Contains(out, `"ok": true`) && !strings.Contains(out, `"ok":true`) {
		t.Fatalf("verify of the signed log: %d\n%s\n%s", code, out, errOut)
	}
	pristine := copyFile(t, s.auditDB())

	forgeDenyAsAllow(t, s.auditDB(), "k-2")
	if _, errOut, code := verify("audit", "verify", "--db", s.auditDB()); code != 0 {
		t.Fatalf("the forgery should pass the unkeyed chain (else this test proves nothing): %s", errOut)
	}
	if out, errOut, code := verify(keyArgs...); code != 1 || !strings.Contains(errOut, "AUDIT_CHAIN_BROKEN") {
		t.Fatalf("rewritten and rehashed log passed verify with the key: %d\n%s\n%s", code, out, errOut)
	}

	restore(t, pristine, s.auditDB())
	truncateTail(t, s.auditDB(), 2)
	if _, errOut, code := verify("audit", "verify", "--db", s.auditDB()); code != 1 || !strings.Contains(errOut, "deleted") {
		t.Fatalf("truncated log: %d %s", code, errOut)
	}
	if out, errOut, code := verify(keyArgs...); code != 1 || !strings.Contains(errOut, "AUDIT_CHAIN_BROKEN") {
		t.Fatalf("truncated log passed verify with the key: %d\n%s\n%s", code, out, errOut)
	}
}

// TestAuditEd25519VerifiesWithPublicKey: the gateway signs with a private
// key file; an auditor holding only the public key verifies.
func TestAuditEd25519VerifiesWithPublicKey(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, _ := x509.MarshalPKCS8PrivateKey(priv)
	pubDER, _ := x509.MarshalPKIXPublicKey(pub)
	files := map[string]string{
		"shop.yaml":        shopBundle,
		"keys/audit.pem":   string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})),
		"keys/auditor.pem": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})),
	}
	cp := "\t\t\tcheckpoint ed25519 {\n\t\t\t\tkey_file keys/audit.pem\n\t\t\t}\n"
	s := startServer(t, keyedCaddyfile(cp), files, gatewayEnv...)
	agent := client{base: s.base, apiKey: "alice-key", agent: "shop-agent", secret: "agent-secret"}
	for i := 0; i < 3; i++ {
		agent.post(t, "/action", envelope(fmt.Sprintf("ed-%d", i), "payments.compensate", "payments://shop/orders/2", map[string]any{"amount": 5}))
	}
	s.stop()
	args := []string{"audit", "verify", "--db", s.auditDB(), "--key-file", filepath.Join(s.dir, "keys/auditor.pem")}
	if out, errOut, code := runCLI(t, s.dir, args...); code != 0 {
		t.Fatalf("verify with the public key: %d\n%s\n%s", code, out, errOut)
	}
	forgeDenyAsAllow(t, s.auditDB(), "ed-1")
	if out, errOut, code := runCLI(t, s.dir, args...); code != 1 || !strings.Contains(errOut, "AUDIT_CHAIN_BROKEN") {
		t.Fatalf("forged log passed: %d\n%s\n%s", code, out, errOut)
	}
}

// forgeDenyAsAllow rewrites the decision of actionID from DENY to ALLOW and
// relinks and rehashes every later row, as a forger without the key would.
func forgeDenyAsAllow(t *testing.T, path, actionID string) {
	t.Helper()
	db := openDB(t, path)
	defer db.Close()
	var from int64
	if err := db.QueryRow(`SELECT seq FROM audit_events WHERE action_id = ? AND event_type = 'action.decision'`, actionID).Scan(&from); err != nil {
		t.Fatal(err)
	}
	var prev string
	_ = db.QueryRow(`SELECT event_hash FROM audit_events WHERE seq = ?`, from-1).Scan(&prev)
	rows := readRows(t, db, from)
	for i, r := range rows {
		var fields map[string]any
		dec := json.NewDecoder(strings.NewReader(r.line))
		dec.UseNumber()
		if err := dec.Decode(&fields); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if fields["decision"] != "DENY" {
				t.Fatalf("row %d is not a DENY: %s", r.seq, r.line)
			}
			fields["decision"], fields["reason"] = "ALLOW", "allow_by_rule"
		}
		fields["prev_event_hash"], fields["event_hash"] = prev, ""
		raw, _ := json.Marshal(fields)
		h, err := audit.Hash(raw)
		if err != nil {
			t.Fatal(err)
		}
		fields["event_hash"] = h
		line, _ := json.Marshal(fields)
		if _, err := db.Exec(`UPDATE audit_events SET json = ?, prev_event_hash = ?, event_hash = ? WHERE seq = ?`,
			string(line), prev, h, r.seq); err != nil {
			t.Fatal(err)
		}
		// A careful forger also points the checkpoints at the new hashes;
		// only their signatures cannot be redone.
		if _, err := db.Exec(`UPDATE audit_checkpoints SET event_hash = ? WHERE seq = ?`, h, r.seq); err != nil {
			t.Fatal(err)
		}
		prev = h
	}
}

type auditRow struct {
	seq  int64
	line string
}

func readRows(t *testing.T, db *sql.DB, from int64) []auditRow {
	t.Helper()
	rows, err := db.Query(`SELECT seq, json FROM audit_events WHERE seq >= ? ORDER BY seq`, from)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		if err := rows.Scan(&r.seq, &r.line); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// truncateTail deletes the last n rows and hides it in sqlite_sequence.
func truncateTail(t *testing.T, path string, n int) {
	t.Helper()
	db := openDB(t, path)
	defer db.Close()
	for _, stmt := range []string{
		`DELETE FROM audit_events WHERE seq > (SELECT MAX(seq) - ` + strconv.Itoa(n) + ` FROM audit_events)`,
		`UPDATE sqlite_sequence SET seq = (SELECT MAX(seq) FROM audit_events) WHERE name = 'audit_events'`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

func copyFile(t *testing.T, path string) []byte {
	t.Helper()
	// The server stopped cleanly, so the WAL is checkpointed into the file;
	// fold anything left over in before copying.
	db := openDB(t, path)
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func restore(t *testing.T, content []byte, path string) {
	t.Helper()
	for _, suffix := range []string{"-wal", "-shm"} {
		_ = os.Remove(path + suffix)
	}
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
}

// runCLIEnv is runCLI with extra environment.
func runCLIEnv(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return runCLI(t, dir, args...)
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// durabilityTrials is how many SIGKILL trials TestAuditSurvivesSIGKILL
// runs: a few in make test, NOMOS_DURABILITY_TRIALS=20 in make bench-e2e.
func durabilityTrials(t *testing.T) int {
	if v := os.Getenv("NOMOS_DURABILITY_TRIALS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("NOMOS_DURABILITY_TRIALS=%q: want a positive integer", v)
		}
		return n
	}
	return 3
}

// TestAuditSurvivesSIGKILL kills the gateway with SIGKILL at a random
// moment during concurrent mixed traffic, restarts it on the same files,
// and checks after every restart that each decision a client saw answered
// has its audit row with that decision and its complete trace, that the
// signed chain verifies, and that no event of an action was recorded twice.
func TestAuditSurvivesSIGKILL(t *testing.T) {
	env := append(slicesClone(gatewayEnv), "T_AUDIT_KEY="+auditKey)
	s := startServer(t, keyedCaddyfile(hmacCheckpoint), map[string]string{"shop.yaml": shopBundle}, env...)
	t.Setenv("T_AUDIT_KEY", auditKey)
	answered := map[string]string{}
	for trial := 0; trial < durabilityTrials(t); trial++ {
		got := killDuringTraffic(t, s, trial)
		t.Logf("trial %d: %d decisions answered before SIGKILL", trial, len(got))
		for id, decision := range got {
			answered[id] = decision
		}
		s = relaunch(t, s, env)
		checkDurable(t, s, answered)
	}
	if len(answered) == 0 {
		t.Fatal("no request was answered before any kill: the test proved nothing")
	}
}

// killDuringTraffic sends mixed requests from several clients and kills the
// server after a random delay; it returns the decisions clients received.
func killDuringTraffic(t *testing.T, s *server, trial int) map[string]string {
	t.Helper()
	agent := client{base: s.base, apiKey: "alice-key", agent: "shop-agent", secret: "agent-secret"}
	kinds := []struct {
		typ, resource string
		params        map[string]any
	}{
		{"orders.read", "shop://orders/1", nil},
		{"payments.compensate", "payments://shop/orders/2", map[string]any{"amount": 5}},
		{"payments.refund", "payments://shop/orders/3", map[string]any{"amount": 500}},
		{"crm.export", "crm://contacts/all", nil},
	}
	var mu sync.Mutex
	got := map[string]string{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	httpc := &http.Client{Timeout: 10 * time.Second}
	for w := 0; w < 6; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := kinds[(w+i)%len(kinds)]
				id := fmt.Sprintf("t%d-w%d-%d", trial, w, i)
				raw, _ := json.Marshal(envelope(id, k.typ, k.resource, k.params))
				resp, err := httpc.Do(agent.request("/action", raw))
				if err != nil {
					return // the server is gone
				}
				var out map[string]any
				err = json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if err == nil && resp.StatusCode == http.StatusOK {
					mu.Lock()
					got[id] = fmt.Sprint(out["decision"])
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(time.Duration(50+mrand.IntN(400)) * time.Millisecond)
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	close(stop)
	wg.Wait()
	return got
}

// relaunch starts nomos again in the same directory, on the same files.
func relaunch(t *testing.T, old *server, env []string) *server {
	t.Helper()
	s := &server{t: t, dir: old.dir, base: old.base, admin: old.admin, logs: new(lockedBuffer), dataDir: old.dataDir}
	s.cmd = exec.Command(nomosBinary(t), "run", "--config", "Caddyfile", "--adapter", "caddyfile")
	s.cmd.Dir = s.dir
	s.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+s.dataDir, "XDG_CONFIG_HOME="+filepath.Join(s.dir, "config"), "HOME="+s.dir)
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	s.waitHealthy()
	return s
}

// checkDurable verifies the signed chain and finds every answered action in
// it with its decision, and with its trace.start, action.decision,
// action.completed and trace.end exactly once: the completion is committed
// before the answer is released, so an answer a client saw has its whole
// trace.
func checkDurable(t *testing.T, s *server, answered map[string]string) {
	t.Helper()
	if out, errOut, code := runCLI(t, s.dir, "audit", "verify", "--db", s.auditDB(), "--key-env", "T_AUDIT_KEY"); code != 0 {
		t.Fatalf("chain after SIGKILL: %d\n%s\n%s", code, out, errOut)
	}
	db := openDB(t, s.auditDB())
	defer db.Close()
	rows, err := db.Query(`SELECT action_id, event_type, json FROM audit_events`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	stored := map[string]string{}
	count := map[[2]string]int{}
	for rows.Next() {
		var id, typ, line string
		if err := rows.Scan(&id, &typ, &line); err != nil {
			t.Fatal(err)
		}
		if id == "" { // an event of no action (a refused request, a listing)
			continue
		}
		if count[[2]string{id, typ}]++; count[[2]string{id, typ}] == 2 {
			t.Errorf("action %s has two %s events", id, typ)
		}
		if typ != audit.EventActionDecision {
			continue
		}
		var e audit.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		stored[id] = e.Decision
	}
	for id, decision := range answered {
		if stored[id] != decision {
			t.Errorf("client saw %s for %s, audit holds %q", decision, id, stored[id])
		}
		for _, typ := range []string{audit.EventTraceStart, audit.EventActionCompleted, audit.EventTraceEnd} {
			if count[[2]string{id, typ}] != 1 {
				t.Errorf("client saw an answer for %s, audit holds %d %s events", id, count[[2]string{id, typ}], typ)
			}
		}
	}
}
