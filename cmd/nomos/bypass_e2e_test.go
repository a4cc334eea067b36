package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// The bypass suite of issue 4 §3, end to end through the built binary. The
// cases are in testdata/bypass/cases.jsonl. Policy allows everything the
// cases try (the worst case), so each refusal comes from the executor or
// from normalization, not from a missing rule. Each case asserts the
// decision, what happened on disk or on the network, the audit
// classification, and that no forbidden content shows up in a response, the
// server's logs or any audit row.

// bypassPolicy allows every attempt. {REDIRECT_HOST} is the HTTPS redirector
// (the one private address the executor may reach), {INTERNAL_PORT} the
// loopback server an SSRF must never reach.
const bypassPolicy = `version: v1
rules:
  - id: deny-dotenv
    action_type: "*"
    resource: file://workspace/**/.env
    decision: DENY
  - id: deny-git
    action_type: "*"
    resource: file://workspace/.git/**
    decision: DENY
  - id: approve-ci
    action_type: fs.write
    resource: file://workspace/ci/**
    decision: REQUIRE_APPROVAL
  - id: read-any
    action_type: fs.read
    resource: file://workspace/**
    decision: ALLOW
  - id: write-any
    action_type: fs.write
    resource: file://workspace/**
    decision: ALLOW
  - id: patch-any
    action_type: repo.apply_patch
    resource: repo://local/workspace
    decision: ALLOW
  - id: exec-shell
    action_type: process.exec
    resource: file://workspace/**
    decision: ALLOW
    exec_match:
      argv_patterns:
        - [sh, -c, "*"]
        - [env]
        - [touch, cwd-marker]
  - id: exec-needs-container
    action_type: process.exec
    resource: file://workspace/**
    decision: ALLOW
    exec_match:
      argv_patterns:
        - [touch, sandbox-marker]
    obligations:
      sandbox_mode: container
  - id: checkout-db-password
    action_type: secrets.checkout
    resource: secret://vault/db_password
    decision: ALLOW
  - id: fetch-follow
    action_type: net.http_request
    resource: url://{REDIRECT_HOST}/follow/**
    decision: ALLOW
    obligations:
      net_allowlist: ["{REDIRECT_HOST}"]
      http_redirects: true
      http_redirect_hop_limit: 3
  - id: fetch-nofollow
    action_type: net.http_request
    resource: url://{REDIRECT_HOST}/nofollow/**
    decision: ALLOW
    obligations:
      net_allowlist: ["{REDIRECT_HOST}"]
  - id: fetch-hop-to-internal
    action_type: net.http_request
    resource: url://{REDIRECT_HOST}/hop/**
    decision: ALLOW
    obligations:
      net_allowlist: ["{REDIRECT_HOST}", "localhost:{INTERNAL_PORT}"]
      http_redirects: true
  - id: fetch-localhost
    action_type: net.http_request
    resource: url://localhost:{INTERNAL_PORT}/**
    decision: ALLOW
    obligations:
      net_allowlist: ["localhost:{INTERNAL_PORT}"]
  - id: fetch-ipv6-loopback
    action_type: net.http_request
    resource: url://[::1]:{INTERNAL_PORT}/**
    decision: ALLOW
    obligations:
      net_allowlist: ["[::1]:{INTERNAL_PORT}"]
  - id: fetch-ipv4-mapped
    action_type: net.http_request
    resource: url://[::ffff:127.0.0.1]:{INTERNAL_PORT}/**
    decision: ALLOW
    obligations:
      net_allowlist: ["[::ffff:127.0.0.1]:{INTERNAL_PORT}"]
  - id: fetch-metadata
    action_type: net.http_request
    resource: url://169.254.169.254/**
    decision: ALLOW
    obligations:
      net_allowlist: [169.254.169.254]
`

// bypassCanary is the content of the file outside the workspace.
const bypassCanary = "CANARY-OUTSIDE-WORKSPACE-5d1e9a"

// bypassDotenv is the secret in the workspace's .env, which policy denies.
const bypassDotenv = "DOTENV-SECRET-7c41e0"

// bypassCase is one line of testdata/bypass/cases.jsonl.
type bypassCase struct {
	Name string `json:"name"`
	// Attack is the bullet of issue 4 §3 the case belongs to.
	Attack string       `json:"attack"`
	Steps  []bypassStep `json:"steps"`
	// Absent are paths, relative to the directory holding workspace/ and
	// outside/, that must not exist after the case.
	Absent []string `json:"absent"`
	// Unchanged maps such paths to the content they must still have.
	Unchanged map[string]string `json:"unchanged"`
	// Untouched names loopback servers ("evil", "internal") that must not
	// have received a single request.
	Untouched []string `json:"untouched"`
	// Forbidden strings must appear in no response, log line or audit row.
	Forbidden []string `json:"forbidden"`
	// Note is logged when the case fails: a known gap and where it is.
	Note string `json:"note"`
}

// bypassStep is one request of a case and what must come of it.
type bypassStep struct {
	// Trace overrides the case's trace id.
	Trace    string         `json:"trace"`
	Type     string         `json:"action_type"`
	Resource string         `json:"resource"`
	Params   map[string]any `json:"params"`
	// Status is the HTTP status. Default: 200.
	Status int `json:"status"`
	// Policy is the decision in the action.decision audit event.
	// Default: ALLOW.
	Policy string `json:"policy"`
	// Decision is the decision of the response. Default: DENY.
	Decision string `json:"decision"`
	// Reason is the reason code the response's reason starts with.
	Reason string `json:"reason"`
	// Message must be in the reason, when set.
	Message string `json:"message"`
	// Class is the result_classification audited: on action.completed for
	// an evaluated action, on action.decision for a rejected request.
	Class          string  `json:"class"`
	Stdout         *string `json:"stdout"`
	Stderr         *string `json:"stderr"`
	StderrContains string  `json:"stderr_contains"`
	Output         *string `json:"output"`
	// SaveLease keeps the credential_lease_id for {LEASE} in later steps.
	SaveLease bool `json:"save_lease"`
}

// bypassEnv is one running suite: the nomos process, the directories and
// the loopback servers the cases refer to.
type bypassEnv struct {
	g       e2eAgent
	base    string
	servers map[string]*hitServer
	vars    *strings.Replacer
}

func loadBypassCases(t *testing.T, vars *strings.Replacer) []bypassCase {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", "bypass", "cases.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cases []bypassCase
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var c bypassCase
		dec := json.NewDecoder(strings.NewReader(vars.Replace(sc.Text())))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("cases.jsonl:%d: %v", line, err)
		}
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return cases
}

// bypassLayout builds base/workspace and base/outside with the symlinks the
// cases use. Every link is planted by the test; the agent never makes one.
func bypassLayout(t *testing.T) (base, ws, outside string) {
	t.Helper()
	base = t.TempDir()
	ws, outside = filepath.Join(base, "workspace"), filepath.Join(base, "outside")
	writeFiles(t, ws, map[string]string{"src/main.go": "package main\n", ".env": bypassDotenv + "\n",
		".git/config": "[core]\n", ".git/hooks/README": "hooks\n", "ci/deploy.yml": "deploy\n", "docs-in/a/b.txt": "inside\n"})
	writeFiles(t, outside, map[string]string{"canary.txt": bypassCanary})
	links := map[string]string{
		// Links inside the workspace to paths policy denies (issue 8 #2).
		"src/notes.txt": "../.env",
		"src/gitlink":   "../.git",
		"src/hooks":     "../.git/hooks",
		"src/cilink":    "../ci",
		"src/alink":     "../docs-in/a",
		"notes.txt":     filepath.Join(outside, "canary.txt"),
		"rel-escape":    "../outside/canary.txt",
		"docs":          outside,
		"out":           outside,
		"chain-a":       "chain-b",
		"chain-b":       filepath.Join(outside, "canary.txt"),
		"dangling":      filepath.Join(outside, "missing.txt"),
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(ws, name)); err != nil {
			t.Fatal(err)
		}
	}
	// A hard link cannot be told from the file by its path: reads refuse it.
	if err := os.Link(filepath.Join(ws, ".env"), filepath.Join(ws, "src", "hard.txt")); err != nil {
		t.Fatal(err)
	}
	return base, ws, outside
}

func startBypass(t *testing.T) *bypassEnv {
	t.Helper()
	cert, caFile := loopbackTLS(t)
	evil := startHTTPS(t, "127.0.0.1", cert, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "EVIL-BODY-2b7c")
	})
	internal := startHTTPS(t, "127.0.0.1", cert, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "INTERNAL-ONLY-9c2b")
	})
	_, internalPort, _ := strings.Cut(internal.host(), ":")
	var redirector *hitServer
	redirector = startHTTPS(t, "127.0.0.2", cert, func(w http.ResponseWriter, r *http.Request) {
		targets := map[string]string{
			"/follow/elsewhere":   "https://" + evil.host() + "/exfil-7f3a9?leak=1",
			"/nofollow/elsewhere": "https://" + evil.host() + "/exfil-7f3a9?leak=1",
			"/follow/downgrade":   "http://" + redirector.host() + "/follow/landing-5e1",
			"/follow/userinfo":    "https://user:pw-3c8@" + redirector.host() + "/follow/landing-5e1",
			"/follow/loop":        "/follow/loop",
			"/follow/same-host":   "/follow/landing",
			"/hop/internal":       "https://localhost:" + internalPort + "/latest/meta-data",
		}
		if to, ok := targets[r.URL.Path]; ok {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		io.WriteString(w, "landed")
	})
	base, ws, outside := bypassLayout(t)
	vars := []string{"{REDIRECT_HOST}", redirector.host(), "{INTERNAL_PORT}", internalPort,
		"{EVIL_HOST}", evil.host(), "{CANARY}", bypassCanary, "{DOTENV}", bypassDotenv, "{SECRET}", e2eSecret, "{OUTSIDE}", outside}
	policy := strings.NewReplacer(vars...).Replace(bypassPolicy)
	// 127.0.0.2 is the only private address the executor may reach: the
	// redirector. 127.0.0.1, where the internal and evil servers listen,
	// stays forbidden.
	g := startCodingAgent(t, e2eOptions{policy: policy, ws: ws, profile: bypassProfile(), cidrs: "127.0.0.2/32",
		env: []string{"SSL_CERT_FILE=" + caFile}})
	return &bypassEnv{g: g, base: base, vars: strings.NewReplacer(vars...),
		servers: map[string]*hitServer{"evil": evil, "internal": internal, "redirector": redirector}}
}

// bypassProfile is the strongest profile short of container this host has:
// local on Linux, where the container obligation must still be refused.
func bypassProfile() string {
	if runtime.GOOS == "linux" {
		return "local"
	}
	return "none"
}

func TestBypassSuite(t *testing.T) {
	env := startBypass(t)
	cases := loadBypassCases(t, env.vars)
	if len(cases) == 0 {
		t.Fatal("no cases in testdata/bypass/cases.jsonl")
	}
	attacks := map[string]bool{}
	for _, c := range cases {
		attacks[c.Attack] = true
		t.Run(c.Name, func(t *testing.T) { env.run(t, c) })
	}
	for _, want := range []string{
		"path traversal", "symlink escape on read", "write through a symlinked parent",
		"symlink inside the workspace to a denied path",
		"redirect to a disallowed host", "secret echoed by a command",
		"sandbox requirement on a host without that profile",
		"SSRF to 127.0.0.1 and 169.254.169.254 through a DNS name",
	} {
		if !attacks[want] {
			t.Errorf("no case for %q", want)
		}
	}
	// Whatever any case did, these never leave the executor.
	wantNowhere(t, env.g, bypassCanary, bypassDotenv, e2eSecret, "EVIL-BODY-2b7c", "INTERNAL-ONLY-9c2b", "exfil-7f3a9")
	if got, _ := os.ReadFile(filepath.Join(env.base, "outside", "canary.txt")); string(got) != bypassCanary {
		t.Errorf("the file outside the workspace changed: %q", got)
	}
	// The evidence itself is intact: the hash chain of every event verifies.
	env.g.s.stop()
	if out, errOut, code := runCLI(t, env.g.s.dir, "audit", "verify", "--db", env.g.s.auditDB()); code != 0 || !strings.Contains(out, `"ok":true`) {
		t.Errorf("audit verify: code %d\n%s\n%s", code, out, errOut)
	}
}

func (env *bypassEnv) run(t *testing.T, c bypassCase) {
	defer func() {
		if t.Failed() && c.Note != "" {
			t.Log(c.Note)
		}
	}()
	hits := map[string]int{}
	for name, s := range env.servers {
		hits[name] = len(s.hits())
	}
	lease := ""
	for i, st := range c.Steps {
		id := fmt.Sprintf("%s-%d", c.Name, i+1)
		trace := "trace-" + c.Name
		if st.Trace != "" {
			trace = st.Trace
		}
		a := env.g.act(t, id, trace, st.Type, st.Resource, withLease(t, st.Params, lease))
		env.check(t, id, st, a)
		if st.SaveLease {
			if lease = a.str("credential_lease_id"); !strings.HasPrefix(lease, "lease_") {
				t.Fatalf("%s: no lease: %s", id, a.raw)
			}
		}
	}
	for _, p := range c.Absent {
		wantAbsent(t, filepath.Join(env.base, filepath.FromSlash(p)))
	}
	for p, want := range c.Unchanged {
		if got, err := os.ReadFile(filepath.Join(env.base, filepath.FromSlash(p))); err != nil || string(got) != want {
			t.Errorf("%s: got %q (%v), want %q", p, got, err, want)
		}
	}
	for _, name := range c.Untouched {
		if got := env.servers[name].hits(); len(got) != hits[name] {
			t.Errorf("server %s was contacted: %v", name, got[hits[name]:])
		}
	}
	wantNowhere(t, env.g, c.Forbidden...)
}

// withLease puts the saved lease id where a step says {LEASE}.
func withLease(t *testing.T, params map[string]any, lease string) map[string]any {
	t.Helper()
	raw, err := json.Marshal(params)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(strings.ReplaceAll(string(raw), "{LEASE}", lease)), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// check asserts one step's response and its audit events.
func (env *bypassEnv) check(t *testing.T, id string, st bypassStep, a answer) {
	t.Helper()
	status, decision, policy := cmp.Or(st.Status, 200), cmp.Or(st.Decision, "DENY"), cmp.Or(st.Policy, "ALLOW")
	wantAnswer(t, a, status, decision, st.Reason)
	if !strings.Contains(a.str("reason"), st.Message) {
		t.Errorf("%s: reason %q does not say %q", id, a.str("reason"), st.Message)
	}
	if decision == "DENY" {
		for _, k := range []string{"output", "stdout", "stderr", "exit_code", "status_code", "credential_lease_id", "execution_mode", "obligations"} {
			if _, ok := a.body[k]; ok {
				t.Errorf("%s: a refusal carries %s: %s", id, k, a.raw)
			}
		}
	}
	wantField(t, id, "stdout", st.Stdout, a)
	wantField(t, id, "stderr", st.Stderr, a)
	wantField(t, id, "output", st.Output, a)
	if !strings.Contains(a.str("stderr"), st.StderrContains) {
		t.Errorf("%s: stderr %q does not contain %q", id, a.str("stderr"), st.StderrContains)
	}
	if status != 200 {
		wantRejectedAudit(t, env.g, id, st.Class)
		return
	}
	wantAudit(t, env.g, id, policy, decision, st.Reason, st.Class)
}

func wantField(t *testing.T, id, key string, want *string, a answer) {
	t.Helper()
	if want != nil && a.str(key) != *want {
		t.Errorf("%s: %s %q, want %q", id, key, a.str(key), *want)
	}
}

const racePolicy = `version: v1
rules:
  - id: write-any
    action_type: fs.write
    resource: file://workspace/**
    decision: ALLOW
`

// TestBypassParentSwapRace swaps a workspace directory's symlink between a
// directory inside the workspace and one outside while writes go through
// it. Which writes win the race varies from run to run; what must hold in
// every run is that nothing is ever written outside, and that each write
// either landed inside or was refused as a sandbox violation. The exact
// interleaving (swap between the checks and the rename) is pinned at the
// executor level, where a hook can run at that moment: see "write through a
// symlinked parent swapped mid-request" in internal/executor/bypass_test.go.
func TestBypassParentSwapRace(t *testing.T) {
	_, ws, outside := bypassLayout(t)
	race := filepath.Join(ws, "race")
	escape := filepath.Join(outside, "race")
	for _, d := range []string{filepath.Join(race, "real"), escape} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(race, "src")
	if err := os.Symlink("real", link); err != nil {
		t.Fatal(err)
	}
	g := startCodingAgent(t, e2eOptions{policy: racePolicy, ws: ws, profile: "none", cidrs: "127.0.0.2/32"})

	stop := make(chan struct{})
	var flips atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		targets := []string{escape, "real"}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// rename(2) replaces the link atomically: the path always
			// exists and is a link to one of the two directories.
			tmp := filepath.Join(race, "src.tmp")
			_ = os.Remove(tmp)
			if os.Symlink(targets[i%2], tmp) == nil && os.Rename(tmp, link) == nil {
				flips.Add(1)
			}
		}
	}()
	const writers, perWriter = 4, 15
	outcomes := make(chan string, writers*perWriter)
	var ww sync.WaitGroup
	for w := 0; w < writers; w++ {
		ww.Add(1)
		go func(w int) {
			defer ww.Done()
			for i := 0; i < perWriter; i++ {
				id := fmt.Sprintf("race-%d-%d", w, i)
				a, err := g.send(id, "", "fs.write", fmt.Sprintf("file://workspace/race/src/f-%d-%d.txt", w, i), map[string]any{"content": "RACED"})
				if err != nil {
					outcomes <- id + " ERROR " + err.Error()
					continue
				}
				outcomes <- id + " " + a.str("decision") + " " + a.str("reason")
			}
		}(w)
	}
	ww.Wait()
	close(stop)
	wg.Wait()
	close(outcomes)

	counts := map[string]int{}
	for o := range outcomes {
		id, rest, _ := strings.Cut(o, " ")
		decision, reason, _ := strings.Cut(rest, " ")
		code, _, _ := strings.Cut(reason, ":")
		switch {
		case decision == "ALLOW":
			wantAudit(t, g, id, "ALLOW", "ALLOW", "allow_by_rule", "SUCCESS")
		case decision == "DENY" && code == "sandbox_violation":
			// Refused when deciding (the link pointed outside) or when
			// opening (it was swapped after the decision).
			wantAuditEither(t, g, id, "sandbox_violation", "SANDBOX_VIOLATION")
		default:
			t.Errorf("%s: unexpected outcome %s %q", id, decision, reason)
		}
		counts[decision+" "+reason]++
	}
	t.Logf("%d swaps; outcomes %v", flips.Load(), counts)
	entries, err := os.ReadDir(escape)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		t.Fatalf("writes landed outside the workspace: %v", names)
	}
	inside, _ := os.ReadDir(filepath.Join(race, "real"))
	if n := counts["ALLOW allow_by_rule"]; len(inside) != n || slices.ContainsFunc(inside, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), ".nomos-") }) {
		t.Errorf("%d writes allowed, %d files inside (temporary files must be gone)", n, len(inside))
	}
}

// wantAuditEither accepts a refusal recorded when deciding (action.decision
// DENY) or when executing (action.decision ALLOW, action.completed DENY).
func wantAuditEither(t *testing.T, g e2eAgent, actionID, reason, class string) {
	t.Helper()
	evs := auditEvents(t, g.s.auditDB(), actionID)
	policy := "ALLOW"
	if evs["action.decision"].Decision == "DENY" {
		policy = "DENY"
	}
	wantAudit(t, g, actionID, policy, "DENY", reason, class)
}
