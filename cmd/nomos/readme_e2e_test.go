package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// walkthroughBlock is one shell block of the README walkthrough and the
// output lines printed under it.
type walkthroughBlock struct {
	script string
	want   []string
}

// readDocBlocks extracts the ```sh / ```json (or ```text) pairs of one
// "## <heading>" section of a Markdown file.
func readDocBlocks(t *testing.T, path, heading string) []walkthroughBlock {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## "+heading+"\n")
	if !ok {
		t.Fatalf("%s has no ## %s section", path, heading)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []walkthroughBlock
	var cur *[]string
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(section))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "```sh":
			blocks = append(blocks, walkthroughBlock{})
			lines, cur = nil, &lines
		case line == "```json" || line == "```text":
			lines, cur = nil, &lines
		case line == "```" && cur != nil:
			b := &blocks[len(blocks)-1]
			if b.script == "" {
				b.script = strings.Join(lines, "\n")
			} else {
				b.want = lines
			}
			cur = nil
		case cur != nil:
			*cur = append(*cur, line)
		}
	}
	if len(blocks) < 3 {
		t.Fatalf("%s ## %s has only %d blocks", path, heading, len(blocks))
	}
	return blocks
}

// TestReadmeWalkthrough runs the README's curl walkthrough, exactly as
// printed, against the binary started the way `make run` starts it, and
// checks every output line against the one printed in the README ("…"
// stands for a value that differs per run).
func TestReadmeWalkthrough(t *testing.T) {
	blocks := readDocBlocks(t, "../../README.md", "Walkthrough")
	port, admin := freePort(t), freePort(t)
	repl := strings.NewReplacer("127.0.0.1:8080", fmt.Sprintf("127.0.0.1:%d", port), "http://:8080", fmt.Sprintf("http://:%d", port),
		"127.0.0.1:2019", fmt.Sprintf("127.0.0.1:%d", admin))
	files := map[string]string{}
	bundles, _ := filepath.Glob("../../examples/policies/*.yaml")
	srcs := []string{"Caddyfile.example", "examples/workspace/README.md", "examples/workspace/src/hello.txt", "examples/workspace/.env"}
	for _, b := range bundles {
		srcs = append(srcs, strings.TrimPrefix(b, "../../"))
	}
	for _, src := range srcs {
		data, err := os.ReadFile(filepath.Join("../..", src))
		if err != nil {
			t.Fatal(err)
		}
		files[src] = repl.Replace(string(data))
	}
	files["bin/retail-mcp"] = string(buildRetailMCP(t))
	s := startServerWith(t, "Caddyfile.example", files, makeRunEnv()...)
	bin := nomosBinary(t)
	if err := os.Symlink(bin, filepath.Join(s.dir, "bin", "nomos")); err != nil {
		t.Fatal(err)
	}
	runDocBlocks(t, blocks, repl, s.dir, "XDG_DATA_HOME="+s.dataDir, "HOME="+s.dir)
	t.Run("http-api.md", func(t *testing.T) {
		api := readDocBlocks(t, "../../docs/http-api.md", "Examples")
		runDocBlocks(t, api, repl, s.dir, "XDG_DATA_HOME="+s.dataDir, "HOME="+s.dir)
	})
}

// TestPolicyDocCommands runs the `nomos policy` examples of
// docs/policy-language.md from the repository root, as printed.
func TestPolicyDocCommands(t *testing.T) {
	blocks := readDocBlocks(t, "../../docs/policy-language.md", "Trying a policy")
	binDir := t.TempDir()
	if err := os.Symlink(nomosBinary(t), filepath.Join(binDir, "nomos")); err != nil {
		t.Fatal(err)
	}
	runDocBlocks(t, blocks, strings.NewReplacer(), "../..", "PATH="+binDir+":"+os.Getenv("PATH"))
}

// runDocBlocks runs the blocks in one bash session in dir and checks each
// block's output against the lines printed under it.
func runDocBlocks(t *testing.T, blocks []walkthroughBlock, repl *strings.Replacer, dir string, env ...string) {
	t.Helper()
	var script strings.Builder
	script.WriteString("set -u\n")
	for i, b := range blocks {
		fmt.Fprintf(&script, "echo '@@block %d@@'\n%s\n", i, repl.Replace(b.script))
	}
	cmd := exec.Command("bash", "-c", script.String())
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("doc commands failed: %v\n%s", err, out)
	}
	got := splitBlocks(string(out), len(blocks))
	for i, b := range blocks {
		checkBlockOutput(t, i, b.want, got[i])
	}
}

func splitBlocks(out string, n int) [][]string {
	got := make([][]string, n)
	idx := -1
	for _, line := range strings.Split(out, "\n") {
		var k int
		if _, err := fmt.Sscanf(line, "@@block %d@@", &k); err == nil {
			idx = k
			continue
		}
		if idx >= 0 && strings.TrimSpace(line) != "" {
			got[idx] = append(got[idx], line)
		}
	}
	return got
}

// checkBlockOutput matches each printed line, with "…" as a wildcard.
func checkBlockOutput(t *testing.T, i int, want, got []string) {
	t.Helper()
	if len(want) != len(got) {
		t.Errorf("block %d: README shows %d output lines, the run printed %d:\n%s", i, len(want), len(got), strings.Join(got, "\n"))
		return
	}
	for j := range want {
		parts := strings.Split(want[j], "…")
		for k := range parts {
			parts[k] = regexp.QuoteMeta(parts[k])
		}
		re := regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
		if !re.MatchString(got[j]) {
			t.Errorf("block %d line %d:\nREADME: %s\ngot:    %s", i, j, want[j], got[j])
		}
	}
}

// makeRunEnv is the environment `make run` exports (see the Makefile).
func makeRunEnv() []string {
	return []string{"NOMOS_API_KEY=dev-alice-key", "NOMOS_REVIEWER_KEY=dev-reviewer-key", "NOMOS_AGENT_SECRET=dev-agent-secret"}
}

// buildRetailMCP builds the retail demo MCP server (make build does the
// same for make run) and returns the binary.
func buildRetailMCP(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "retail-mcp")
	if msg, err := exec.Command("go", "build", "-o", out, "../../examples/retail/retail-mcp").CombinedOutput(); err != nil {
		t.Fatalf("building retail-mcp: %v\n%s", err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
