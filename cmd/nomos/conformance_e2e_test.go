package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// activeServerScenarios is the size of the "active" server suite of
// @modelcontextprotocol/conformance 0.1.16 (scripts/mcp-tools.sh pins it).
// A run that executes fewer scenarios fails rather than passing quietly.
const activeServerScenarios = 30

// nodeTools are the Node 22 tools scripts/mcp-tools.sh installs.
type nodeTools struct {
	node        string // the Node 22 binary
	suite       string // the conformance CLI (dist/index.js)
	nodeModules string // holds @modelcontextprotocol/sdk for examples/clients/ts
}

var installNodeTools = sync.OnceValues(func() (nodeTools, error) {
	root, err := filepath.Abs("../..")
	if err != nil {
		return nodeTools{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "mcp-tools.sh"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return nodeTools{}, fmt.Errorf("scripts/mcp-tools.sh: %v\n%s", err, out)
	}
	tools := filepath.Join(root, ".tools")
	return nodeTools{
		node:        filepath.Join(tools, "node22", "node_modules", ".bin", "node"),
		suite:       filepath.Join(tools, "npm", "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js"),
		nodeModules: filepath.Join(tools, "npm", "node_modules"),
	}, nil
})

// needNodeTools installs (once per test binary) and returns the Node tools.
func needNodeTools(t *testing.T) nodeTools {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	tools, err := installNodeTools()
	if err != nil {
		t.Fatal(err)
	}
	return tools
}

// goBuild builds a main package of this module or its dependencies once per
// test binary, into a directory that lives as long as the process.
var goBuilds sync.Map // package path -> func() (string, error)

func goBuild(t *testing.T, pkg string) string {
	t.Helper()
	build, _ := goBuilds.LoadOrStore(pkg, sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "nomos-e2e-bin")
		if err != nil {
			return "", err
		}
		bin := filepath.Join(dir, filepath.Base(pkg))
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
		return bin, nil
	}))
	bin, err := build.(func() (string, error))()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// startEverythingHTTP runs the Go SDK everything-server over stateful
// Streamable HTTP on a free loopback port and returns its base URL.
func startEverythingHTTP(t *testing.T, bin string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(bin, "-http", addr, "-stateless=false")
	logs := new(lockedBuffer)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitListening(t, addr, cmd, logs)
	return "http://" + addr
}

// waitListening polls until addr accepts connections, failing early when
// the process has exited (a config that does not load).
func waitListening(t *testing.T, addr string, cmd *exec.Cmd, logs *lockedBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !exited(cmd) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s; logs:\n%s", addr, logs.String())
}

// exited reports whether a started process has ended, without reaping it
// (the owner's cleanup waits for it): on Linux a zombie's state is Z.
func exited(cmd *exec.Cmd) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		return false // no procfs: rely on the deadline
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z")
}

// conformanceRun is the outcome of one run of the suite.
type conformanceRun struct {
	scenarios []string       // sorted
	checks    map[string]int // scenario -> checks passed
	passed    int
	elapsed   time.Duration
}

// checkResult is one entry of a scenario's checks.json.
type checkResult struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Status       string `json:"status"`
	ErrorMessage string `json:"errorMessage"`
}

// resultDir is how the suite names a scenario's result directory:
// server-<scenario>-<ISO timestamp with ':' and '.' replaced by '-'>.
var resultDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$`)

// runConformance runs every active server scenario against url with an
// empty expected-failures list and fails the test on any check that is
// not a success (FAILURE, WARNING, a scenario that could not run).
func runConformance(t *testing.T, tools nodeTools, url string) conformanceRun {
	t.Helper()
	dir := t.TempDir()
	expected := filepath.Join(dir, "expected-failures.yaml")
	if err := os.WriteFile(expected, []byte("server: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	results := filepath.Join(dir, "results")
	// A run takes seconds; a relay that loses a server-to-client request
	// hangs its scenario, so the bound is what keeps a failure quick.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, tools.node, tools.suite, "server", "--url", url, "--suite", "active",
		"--expected-failures", expected, "--output-dir", results)
	cmd.Env = append(os.Environ(), "NO_COLOR=1")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	run := conformanceRun{elapsed: time.Since(start), checks: map[string]int{}}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("conformance suite: %v\n%s", err, out)
	}
	if ctx.Err() != nil {
		t.Fatalf("conformance suite against %s did not finish in time (the last scenario started hangs):\n%s", url, summaryOf(out))
	}
	failures := readConformanceResults(t, results, &run)
	total := fmt.Sprintf("Total: %d passed, 0 failed", run.passed)
	if len(failures) > 0 || err != nil || !strings.Contains(string(out), total) {
		t.Fatalf("conformance suite against %s: exit %v, %d scenarios ran, %d checks passed, not passed:\n  %s\n\nsuite output:\n%s",
			url, err, len(run.scenarios), run.passed, strings.Join(failures, "\n  "), summaryOf(out))
	}
	if want := fmt.Sprintf("Running active suite (%d scenarios)", activeServerScenarios); !strings.Contains(string(out), want) ||
		len(run.scenarios) != activeServerScenarios {
		t.Fatalf("want %d active scenarios, %d ran:\n%s", activeServerScenarios, len(run.scenarios), summaryOf(out))
	}
	return run
}

// readConformanceResults reads every scenario's checks.json and returns a
// line per check that did not succeed.
func readConformanceResults(t *testing.T, results string, run *conformanceRun) []string {
	t.Helper()
	entries, err := os.ReadDir(results)
	if err != nil {
		t.Fatalf("conformance results: %v", err)
	}
	var failures []string
	for _, e := range entries {
		m := resultDir.FindStringSubmatch(e.Name())
		if m == nil {
			t.Fatalf("unexpected result directory %q", e.Name())
		}
		raw, err := os.ReadFile(filepath.Join(results, e.Name(), "checks.json"))
		if err != nil {
			t.Fatal(err)
		}
		var checks []checkResult
		if err := json.Unmarshal(raw, &checks); err != nil {
			t.Fatalf("%s/checks.json: %v", e.Name(), err)
		}
		if len(checks) == 0 {
			failures = append(failures, m[1]+": no checks")
		}
		for _, c := range checks {
			if c.Status == "SUCCESS" {
				run.checks[m[1]]++
				run.passed++
				continue
			}
			failures = append(failures, fmt.Sprintf("%s: %s %s: %s", m[1], c.Status, c.Name, c.ErrorMessage))
		}
		run.scenarios = append(run.scenarios, m[1])
	}
	slices.Sort(run.scenarios)
	return failures
}

// summaryOf keeps the suite's per-scenario summary and failure details,
// not the chatter of every scenario start.
func summaryOf(out []byte) string {
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "Running client scenario") || strings.HasPrefix(line, "Results saved to") {
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// conformanceURLs are the MCP endpoints examples/conformance/Caddyfile
// serves.
type conformanceURLs struct {
	viaHTTP, viaStdio, viaGuard string
}

// startConformanceGateway runs nomos on examples/conformance/Caddyfile
// exactly as committed, with its ports replaced by free ones, and
// returns the MCP URLs of the HTTP-upstream and stdio-upstream gateways
// and of the guard in front of reverse_proxy.
func startConformanceGateway(t *testing.T, everythingURL, everythingCmd string) (*server, conformanceURLs) {
	t.Helper()
	httpPort, stdioPort, guardPort, admin := freePort(t), freePort(t), freePort(t), freePort(t)
	repl := strings.NewReplacer(
		":8181", fmt.Sprintf(":%d", httpPort),
		":8182", fmt.Sprintf(":%d", stdioPort),
		":8183", fmt.Sprintf(":%d", guardPort),
		"127.0.0.1:2019", fmt.Sprintf("127.0.0.1:%d", admin))
	files := map[string]string{}
	for _, src := range []string{"examples/conformance/Caddyfile", "examples/conformance/allow-all.yaml"} {
		data, err := os.ReadFile(filepath.Join("../..", src))
		if err != nil {
			t.Fatal(err)
		}
		files[src] = repl.Replace(string(data))
	}
	for _, port := range []string{":8181", ":8182", ":8183", ":2019"} {
		if strings.Contains(files["examples/conformance/Caddyfile"], port) {
			t.Fatalf("port %s left in the Caddyfile", port)
		}
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(everythingURL, "http://"), "/mcp")
	s := launch(t, "examples/conformance/Caddyfile", files, []string{"EVERYTHING_URL=" + everythingURL,
		"EVERYTHING_CMD=" + everythingCmd, "EVERYTHING_ADDR=" + addr})
	for _, port := range []int{httpPort, stdioPort, guardPort} {
		waitListening(t, fmt.Sprintf("127.0.0.1:%d", port), s.cmd, s.logs)
	}
	mcpURL := func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/mcp", port) }
	return s, conformanceURLs{viaHTTP: mcpURL(httpPort), viaStdio: mcpURL(stdioPort), viaGuard: mcpURL(guardPort)}
}

// TestMCPConformance runs the official MCP conformance suite (every active
// server scenario, no expected failures) against the Go SDK everything-server
// directly, as the baseline, and then through nomos_mcp on
// examples/conformance/Caddyfile with that server as a Streamable HTTP
// upstream and as a stdio upstream, and through nomos_guard's MCP mode in
// front of reverse_proxy. Each must pass exactly what the upstream passes,
// and every request must have been governed.
func TestMCPConformance(t *testing.T) {
	tools := needNodeTools(t)
	everything := goBuild(t, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
	upstream := startEverythingHTTP(t, everything)

	baseline := runConformance(t, tools, upstream+"/mcp")
	t.Logf("baseline (everything-server directly): %d scenarios, %d checks passed in %s",
		len(baseline.scenarios), baseline.passed, baseline.elapsed.Round(time.Millisecond))

	s, urls := startConformanceGateway(t, upstream+"/mcp", everything)
	for _, c := range []struct{ name, url, server string }{
		{"streamable_http", urls.viaHTTP, "everything_http"},
		{"stdio", urls.viaStdio, "everything_stdio"},
		{"nomos_guard", urls.viaGuard, "everything_guard"},
	} {
		t.Run(c.name, func(t *testing.T) {
			run := runConformance(t, tools, c.url)
			t.Logf("through %s: %d scenarios, %d checks passed in %s",
				c.name, len(run.scenarios), run.passed, run.elapsed.Round(time.Millisecond))
			if !slices.Equal(run.scenarios, baseline.scenarios) || run.passed != baseline.passed {
				t.Errorf("gateway run differs from the baseline: %v vs %v", run.checks, baseline.checks)
			}
			assertGoverned(t, s.logs.String(), c.server)
		})
	}
}

// assertGoverned checks that the audit (stdout sink) holds an ALLOW
// decision for each kind of governed request the suite makes through
// server, so the suite did not pass by bypassing policy.
func assertGoverned(t *testing.T, logs, server string) {
	t.Helper()
	want := []struct{ actionType, resource string }{
		{"mcp.call", "mcp://" + server + "/test_simple_text"},
		{"mcp.resource_read", "mcp://" + server + "/resource/"},
		{"mcp.prompt_get", "mcp://" + server + "/prompt/test_simple_prompt"},
		{"mcp.completion", "mcp://" + server + "/completion/"},
		{"mcp.sample", "mcp://" + server + "/sample"},
		{"mcp.elicit", "mcp://" + server + "/elicit"},
	}
	seen := auditDecisions(logs)
	for _, w := range want {
		if !slices.ContainsFunc(seen, func(d auditDecision) bool {
			return d.ActionType == w.actionType && strings.HasPrefix(d.Resource, w.resource) && d.Decision == "ALLOW"
		}) {
			t.Errorf("no ALLOW decision audited for %s %s*", w.actionType, w.resource)
		}
	}
}

// auditDecision is the part of a decision event the end-to-end tests read.
type auditDecision struct {
	ActionType string `json:"action_type"`
	Resource   string `json:"resource_normalized"`
	Decision   string `json:"decision"`
	Reason     string `json:"reason"`
}

// auditDecisions finds the decision events the stdout audit sink wrote to
// nomos' JSON log: entries of the logger nomos.audit with the event under
// "event".
func auditDecisions(logs string) []auditDecision {
	var out []auditDecision
	for _, line := range strings.Split(logs, "\n") {
		var entry struct {
			Logger string        `json:"logger"`
			Event  auditDecision `json:"event"`
		}
		if json.Unmarshal([]byte(line), &entry) != nil || entry.Logger != "nomos.audit" {
			continue
		}
		if entry.Event.Decision != "" && entry.Event.ActionType != "" {
			out = append(out, entry.Event)
		}
	}
	return out
}
