package main

import (
	"os/exec"
	"strings"
	"testing"
)

// Attacks found after issue 8 was closed, end to end through the built
// binary with the shipped Caddyfile.example and bundles.

// emptyTree is the object id git gives the empty tree in every SHA-1
// repository: `git diff <emptyTree>` prints every tracked file in full.
const emptyTree = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

// gitIn runs git in dir with no user or system config.
func gitIn(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "GIT_CONFIG_NOSYSTEM=1"}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// TestGitDiffRevisionOperandRefused: a committed .env is read through the
// "read-only git" rule by diffing a tree (the empty tree, or any commit)
// against the working tree. The shipped rule admits a diff operand only as
// a pathspec after "--"; and `git diff` itself works in the sandbox (the
// hardened environment once turned diff.external into an empty command).
func TestGitDiffRevisionOperandRefused(t *testing.T) {
	g, ws := startShippedDemo(t)
	gitIn(t, ws, "add", "-f", ".env")
	gitIn(t, ws, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "env")
	for i, argv := range []map[string]any{
		gitArgv("diff", emptyTree),
		gitArgv("diff", "HEAD~1"),
		gitArgv("diff", emptyTree, "--", ".env"),
		gitArgv("diff", "--cached", emptyTree),
	} {
		a := g.act(t, "rt-diff-"+string(rune('a'+i)), "", "process.exec", "file://workspace/src", argv)
		wantAnswer(t, a, 200, "DENY", "deny_")
	}
	a := g.act(t, "rt-write", "", "fs.write", "file://workspace/src/hello.txt", map[string]any{"content": "hello, changed\n"})
	wantAnswer(t, a, 200, "ALLOW", "allow_by_rule")
	for _, argv := range []map[string]any{gitArgv("diff"), gitArgv("diff", "--", "src/hello.txt")} {
		a = g.act(t, "rt-diff-ok", "", "process.exec", "file://workspace/src", argv)
		wantAnswer(t, a, 200, "ALLOW", "allow_by_rule")
		if a.num("exit_code") != 0 || !strings.Contains(a.str("stdout"), "+hello, changed") {
			t.Fatalf("%v in the sandbox: %s", argv, a.raw)
		}
	}
	wantNowhere(t, g, dotenvSecret)
}
