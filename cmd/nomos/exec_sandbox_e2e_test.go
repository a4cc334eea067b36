package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Finding #1 of issue 8, end to end through the built binary: the shipped
// Caddyfile.example and bundles refuse option-driven git at the policy
// layer, and the landlock sandbox contains what a permitted command could
// still do.

const (
	dotenvSecret = "demo-dotenv-secret-93f1" // what examples/workspace/.env holds in this test
	fsmonitorRan = "fsmonitor-ran"           // the file the planted fsmonitor would create
)

// gitRepo makes dir a git repository with one commit of src/.
func gitRepo(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	for _, args := range [][]string{
		{"init", "-q"}, {"add", "src"},
		{"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = []string{"HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
}

// startShippedDemo runs the binary on Caddyfile.example with the shipped
// bundles, as `make run` does, on a workspace that is a git repository.
func startShippedDemo(t *testing.T) (e2eAgent, string) {
	t.Helper()
	port, admin := freePort(t), freePort(t)
	repl := strings.NewReplacer("127.0.0.1:8080", fmt.Sprintf("127.0.0.1:%d", port), "http://:8080", fmt.Sprintf("http://:%d", port), "127.0.0.1:2019", fmt.Sprintf("127.0.0.1:%d", admin))
	files := map[string]string{
		"examples/workspace/src/hello.txt": "hello\n",
		"examples/workspace/.env":          "TOKEN=" + dotenvSecret + "\n",
		"bin/retail-mcp":                   string(buildRetailMCP(t)),
	}
	bundles, _ := filepath.Glob("../../examples/policies/*.yaml")
	for _, src := range append(bundles, "../../Caddyfile.example") {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		files[strings.TrimPrefix(src, "../../")] = repl.Replace(string(data))
	}
	s := startServerWith(t, "Caddyfile.example", files, makeRunEnv()...)
	ws := filepath.Join(s.dir, "examples", "workspace")
	gitRepo(t, ws)
	c := client{base: s.base, apiKey: "dev-alice-key", agent: "demo-agent", secret: "dev-agent-secret", principal: "alice"}
	return e2eAgent{s: s, c: c, seen: new(lockedBuffer)}, ws
}

func gitArgv(args ...string) map[string]any {
	return map[string]any{"argv": append([]string{"git"}, args...)}
}

func TestExecFinding1ShippedConfig(t *testing.T) {
	g, ws := startShippedDemo(t)
	outside := filepath.Join(t.TempDir(), "written-outside")
	gitConfig := readWS(t, ws, ".git/config")
	plant := "--format=[core]%n\tfsmonitor = \"touch " + fsmonitorRan + "\"%n"
	refused := []struct {
		name string
		argv map[string]any
	}{
		{"1a diff --no-index reads .env", gitArgv("diff", "--no-index", ".env", "/dev/null")},
		{"1a diff of a path pair reads .env without --no-index", gitArgv("diff", ".env", "/dev/null")},
		{"1a diff -- path pair", gitArgv("diff", "--", ".env", "/dev/null")},
		{"1b log --output writes outside", gitArgv("log", "-1", "--output="+outside)},
		{"1b option after an operand", gitArgv("log", "HEAD", "--output="+outside)},
		{"1c log --output writes .git/config", gitArgv("log", "-1", plant, "--output=.git/config")},
		{"-c before the subcommand", gitArgv("-c", "core.fsmonitor=touch "+fsmonitorRan, "status")},
		{"-C elsewhere", gitArgv("-C", "/", "status")},
		{"combined short options", gitArgv("log", "-po"+outside)},
		{"end of options", gitArgv("log", "--", "src")},
		{"log -p textconv", gitArgv("log", "-p")},
		{"push with options", gitArgv("-c", "x=y", "push", "--force")},
	}
	for i, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("f1-deny-%d", i)
			a := g.act(t, id, "", "process.exec", "file://workspace/src", tt.argv)
			wantAnswer(t, a, 200, "DENY", "deny_")
		})
	}
	wantAbsent(t, outside)
	wantAbsent(t, filepath.Join(ws, fsmonitorRan))
	if got := readWS(t, ws, ".git/config"); got != gitConfig {
		t.Fatalf(".git/config changed:\n%s", got)
	}

	// What the rule is for still works, inside the landlock sandbox.
	a := g.act(t, "f1-status", "", "process.exec", "file://workspace/src", gitArgv("status", "--short"))
	wantAnswer(t, a, 200, "ALLOW", "allow_by_rule")
	if a.num("exit_code") != 0 || !strings.Contains(a.str("stdout"), ".env") {
		t.Fatalf("git status --short: %s", a.raw)
	}
	a = g.act(t, "f1-log", "", "process.exec", "file://workspace/src", gitArgv("log", "HEAD", "src"))
	wantAnswer(t, a, 200, "ALLOW", "allow_by_rule")
	if !strings.Contains(a.str("stdout"), "init") {
		t.Fatalf("git log HEAD src: %s", a.raw)
	}
	evs := wantAudit(t, g, "f1-status", "ALLOW", "ALLOW", "allow_by_rule", "SUCCESS")
	meta := evs["action.completed"].Metadata
	if meta["sandbox_profile"] != "landlock" || meta["landlock_abi"] == nil {
		t.Errorf("the evidence does not name the landlock sandbox: %v", meta)
	}
	wantAbsent(t, filepath.Join(ws, fsmonitorRan))
	wantNowhere(t, g, dotenvSecret)
}

// sandboxPolicy is what an operator might write by mistake: options let
// through on purpose. The landlock sandbox must still contain the effect.
const sandboxPolicy = `version: v1
rules:
  - id: git-too-wide
    action_type: process.exec
    resource: file://workspace/**
    decision: ALLOW
    exec_match:
      argv_patterns:
        - [git, "-**"]
        - [sh, -c, "*"]
        - [bash, -c, "*"]
    obligations:
      sandbox_mode: landlock
  - id: connect-allowed
    action_type: process.exec
    resource: file://workspace/net
    decision: ALLOW
    exec_match:
      argv_patterns:
        - [bash, -c, "*"]
    obligations:
      sandbox_mode: landlock
      net_allowlist: [127.0.0.1:{OPEN}]
  - id: fetch-unresolvable
    action_type: net.http_request
    resource: "**"
    decision: ALLOW
    obligations:
      net_allowlist: [localhost:{CLOSED}, {LONGHOST}]
`

func TestExecLandlockContainsAllowedCommands(t *testing.T) {
	ws := t.TempDir()
	for rel, content := range map[string]string{"src/main.go": "package main\n", ".env": "TOKEN=" + dotenvSecret + "\n"} {
		writeFiles(t, ws, map[string]string{rel: content})
	}
	gitRepo(t, ws)
	gitConfig := readWS(t, ws, ".git/config")
	outside := filepath.Join(t.TempDir(), "written-outside")
	closed := freePort(t)
	longHost := strings.Repeat("a", 70) + ".example"
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	open := ln.Addr().(*net.TCPAddr).Port
	pol := strings.NewReplacer("{CLOSED}", fmt.Sprint(closed), "{LONGHOST}", longHost, "{OPEN}", fmt.Sprint(open)).Replace(sandboxPolicy)
	// Go's own resolver refuses a 70-byte label without asking anyone, so
	// the failed lookup never leaves the machine (getaddrinfo might).
	g := startCodingAgent(t, e2eOptions{policy: pol, ws: ws, profile: "landlock", cidrs: "127.0.0.0/8", env: []string{"GODEBUG=netdns=go"}})
	plant := "--format=[core]%n\tfsmonitor = \"touch " + fsmonitorRan + "\"%n"

	for i, argv := range []map[string]any{
		gitArgv("log", "-1", plant, "--output=.git/config"),
		gitArgv("log", "-1", "--output="+outside),
		{"argv": []string{"sh", "-c", "echo x >> .git/config"}},
		{"argv": []string{"bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", open)}},
	} {
		id := fmt.Sprintf("ll-%d", i)
		a := g.act(t, id, "", "process.exec", "file://workspace/src", argv)
		wantAnswer(t, a, 200, "ALLOW", "allow_by_rule")
		if a.num("exit_code") == 0 {
			t.Errorf("%s: %v succeeded inside the sandbox: %s", id, argv, a.raw)
		}
	}
	if got := readWS(t, ws, ".git/config"); got != gitConfig {
		t.Fatalf(".git/config changed:\n%s", got)
	}
	wantAbsent(t, outside)
	if n := backlog(t, ln); n != 0 {
		t.Fatalf("a confined child without net_allowlist connected %d times", n)
	}
	// The control: the same connect where the obligation opens the port.
	writeFiles(t, ws, map[string]string{"net/.keep": ""})
	a := g.act(t, "ll-connect-allowed", "", "process.exec", "file://workspace/net",
		map[string]any{"argv": []string{"bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d", open)}, "cwd": "net"})
	if n := backlog(t, ln); a.num("exit_code") != 0 || n != 1 {
		t.Fatalf("an allowed connect failed (%d connections): %s", n, a.raw)
	}
	a = g.act(t, "ll-status", "", "process.exec", "file://workspace/src", gitArgv("status"))
	wantAnswer(t, a, 200, "ALLOW", "allow_by_rule")
	wantAbsent(t, filepath.Join(ws, fsmonitorRan))
	wantAbsent(t, filepath.Join(ws, "src", fsmonitorRan))

	// Finding #12: the client gets a stable reason, the server log the detail.
	for _, tc := range []struct{ id, resource, reason, hidden string }{
		{"f12-dial", fmt.Sprintf("url://localhost:%d/", closed), "execution_error: http request failed: connection refused", "127.0.0.1"},
		{"f12-dns", "url://" + longHost + "/", "execution_error: http request failed: host lookup failed", "no such host"},
	} {
		a := g.act(t, tc.id, "", "net.http_request", tc.resource, map[string]any{})
		if a.str("decision") != "DENY" || a.str("reason") != tc.reason {
			t.Errorf("%s: got %s %q, want DENY %q", tc.id, a.str("decision"), a.str("reason"), tc.reason)
		}
		if strings.Contains(a.raw, tc.hidden) || strings.Contains(a.raw, "dial tcp") {
			t.Errorf("%s: the client sees host detail: %s", tc.id, a.raw)
		}
		if !strings.Contains(g.s.logs.String(), "trace-"+tc.id) {
			t.Errorf("%s: the server log has no detail for the trace", tc.id)
		}
	}
	if !strings.Contains(g.s.logs.String(), "connection refused") || !strings.Contains(g.s.logs.String(), "dial tcp") {
		t.Errorf("the server log lacks the dial detail:\n%s", g.s.logs.String())
	}
}

// backlog accepts the connections already queued on ln, without waiting:
// the child that made them has exited before its action was answered, so
// the kernel completed every handshake it was going to.
func backlog(t *testing.T, ln *net.TCPListener) int {
	t.Helper()
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := syscall.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		c, _, err := syscall.Accept4(fd, syscall.SOCK_CLOEXEC)
		if err != nil {
			return n
		}
		syscall.Close(c)
		n++
	}
}
