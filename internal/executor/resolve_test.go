package executor

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestTargetsResolveSymlinks: policy must see the path that is really
// opened, whatever symlinks the agent planted on the way.
func TestTargetsResolveSymlinks(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, ".env", "SECRET=1\n")
	writeFile(t, e.root, ".git/config", "[core]\n")
	writeFile(t, e.root, "docs/a/b.txt", "b\n")
	writeFile(t, e.root, "src/keep.txt", "k\n")
	writeFile(t, e.root, ".git/hooks/README", "h\n")
	mustSymlink(t, "../.env", filepath.Join(e.root, "src", "notes.txt"))
	mustSymlink(t, "../.git", filepath.Join(e.root, "src", "gitlink"))
	mustSymlink(t, "../docs/a", filepath.Join(e.root, "src", "alink"))
	mustSymlink(t, "../.git/hooks", filepath.Join(e.root, "src", "hooks"))
	cases := []struct {
		typ, resource string
		params        map[string]any
		want          string
	}{
		{"fs.read", "file://workspace/src/notes.txt", map[string]any{}, ".env"},
		{"fs.write", "file://workspace/src/gitlink/config", map[string]any{"content": "x"}, ".git/config"},
		// ".." after a symlink is resolved physically, as the kernel does.
		{"fs.read", "file://workspace/src/alink/b.txt", map[string]any{}, "docs/a/b.txt"},
		// A write to a missing file resolves its deepest existing parent.
		{"fs.write", "file://workspace/src/gitlink/hooks/new/pre-commit", map[string]any{"content": "x"}, ".git/hooks/new/pre-commit"},
		{"fs.write", "file://workspace/src/hooks/post-checkout", map[string]any{"content": "x"}, ".git/hooks/post-checkout"},
		// A write replaces a symlinked last component instead of following it.
		{"fs.write", "file://workspace/src/notes.txt", map[string]any{"content": "x"}, "src/notes.txt"},
		{"repo.apply_patch", WorkspaceRepo, map[string]any{"path": "src/gitlink/config", "content": "x"}, ".git/config"},
	}
	for _, c := range cases {
		ts, err := e.Targets(newAction(t, c.typ, c.resource, c.params))
		if err != nil {
			t.Fatalf("%s %s: %v", c.typ, c.resource, err)
		}
		if len(ts) != 1 || ts[0].Resolved != c.want || ts[0].Resource != "file://workspace/"+c.want {
			t.Errorf("%s %s: targets %+v, want resolved %s", c.typ, c.resource, ts, c.want)
		}
	}
}

func TestTargetsOfPatchNameEveryFile(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, ".git/config", "[core]\n")
	writeFile(t, e.root, "src/a.txt", "a\n")
	mustSymlink(t, "../.git", filepath.Join(e.root, "src", "gitlink"))
	patch := "--- a/src/a.txt\n+++ b/src/a.txt\n@@ -1 +1 @@\n-a\n+b\n" +
		"--- a/src/gitlink/config\n+++ b/src/gitlink/config\n@@ -1 +1 @@\n-[core]\n+[core] x\n"
	ts, err := e.Targets(newAction(t, "repo.apply_patch", WorkspaceRepo, map[string]any{"patch": patch}))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Resolved != "src/a.txt" || ts[1].Resolved != ".git/config" {
		t.Fatalf("targets %+v", ts)
	}
}

func TestTargetsRefuseEscapes(t *testing.T) {
	e := newTestExecutor(t, Config{})
	outside := t.TempDir()
	writeFile(t, outside, "secret.txt", "s")
	mustSymlink(t, outside, filepath.Join(e.root, "out"))
	mustSymlink(t, "..", filepath.Join(e.root, "up"))
	mustSymlink(t, "missing", filepath.Join(e.root, "dangling"))
	for _, r := range []string{"file://workspace/out/secret.txt", "file://workspace/up/x", "file://workspace/dangling"} {
		_, err := e.Targets(newAction(t, "fs.read", r, map[string]any{}))
		if err == nil {
			t.Errorf("%s: resolved, want a refusal", r)
		}
	}
}

// TestSwapBetweenDecisionAndExecution: the executor opens what was decided;
// a symlink planted after the decision fails closed.
func TestSwapBetweenDecisionAndExecution(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, ".env", "SECRET=1\n")
	writeFile(t, e.root, "src/notes.txt", "notes\n")
	a := newAction(t, "fs.read", "file://workspace/src/notes.txt", map[string]any{})
	ts, err := e.Targets(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(e.root, "src", "notes.txt")); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "../.env", filepath.Join(e.root, "src", "notes.txt"))
	res, err := e.Execute(context.Background(), a, allow(noObligations), ts)
	if err == nil {
		t.Fatalf("read %q after the swap, want a refusal", res.Output)
	}
	wantError(t, err.(*Error), CodeSandboxViolation)
}

func TestWriteSwapOfParentAfterDecision(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, ".git/config", "[core]\n")
	writeFile(t, e.root, "src/sub/keep.txt", "k\n")
	a := newAction(t, "fs.write", "file://workspace/src/sub/config", map[string]any{"content": "pwned"})
	ts, err := e.Targets(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(e.root, "src", "sub")); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "../.git", filepath.Join(e.root, "src", "sub"))
	_, err = e.Execute(context.Background(), a, allow(noObligations), ts)
	if err == nil {
		t.Fatal("write went through a swapped parent")
	}
	wantError(t, err.(*Error), CodeSandboxViolation)
	if got := readFile(t, e.root, ".git/config"); got != "[core]\n" {
		t.Fatalf(".git/config = %q", got)
	}
}

// TestCheckOpenedAtRefusesAnotherFile covers the last window: between the
// re-check and the open, only the kernel's name of the open file tells.
func TestCheckOpenedAtRefusesAnotherFile(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, ".env", "SECRET=1\n")
	f, err := os.Open(filepath.Join(e.root, ".env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := openedPath(f); !ok {
		t.Skip("no /proc/self/fd on this platform")
	}
	wantError(t, e.checkOpenedAt(f, "src/notes.txt"), CodeSandboxViolation)
	if xerr := e.checkOpenedAt(f, ".env"); xerr != nil {
		t.Fatal(xerr)
	}
}

func TestReadRefusesHardLinks(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, ".env", "SECRET=1\n")
	if err := os.MkdirAll(filepath.Join(e.root, "src"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(e.root, ".env"), filepath.Join(e.root, "src", "notes.txt")); err != nil {
		t.Skip("no hard links here:", err)
	}
	if runtime.GOOS != "linux" {
		t.Skip("hard links are detected on Linux only")
	}
	_, xerr := execute(t, e, newAction(t, "fs.read", "file://workspace/src/notes.txt", map[string]any{}), noObligations)
	wantError(t, xerr, CodeSandboxViolation)
}

func TestExecCwdThroughSymlinkRefused(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, ".git/HEAD", "ref\n")
	writeFile(t, e.root, "src/a.txt", "a\n")
	mustSymlink(t, "../.git", filepath.Join(e.root, "src", "gitlink"))
	_, err := e.Targets(newAction(t, "process.exec", execResource, map[string]any{"argv": []string{"ls"}, "cwd": "src/gitlink"}))
	if err == nil {
		t.Fatal("a cwd through a symlink was accepted")
	}
	ts, err := e.Targets(newAction(t, "process.exec", execResource, map[string]any{"argv": []string{"ls"}, "cwd": "src"}))
	if err != nil || len(ts) != 1 || ts[0].Resolved != "src" {
		t.Fatalf("targets %+v, %v", ts, err)
	}
}

// TestSameFileAtWithoutProc: where the kernel cannot name an open file,
// the open file must still be what sits at the decided path.
func TestSameFileAtWithoutProc(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, ".env", "SECRET=1\n")
	writeFile(t, e.root, "src/keep.txt", "k\n")
	mustSymlink(t, "../.env", filepath.Join(e.root, "src", "notes.txt"))
	f, err := os.Open(filepath.Join(e.root, "src", "notes.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wantError(t, sameFileAt(f, filepath.Join(e.root, "src", "notes.txt"), "src/notes.txt"), CodeSandboxViolation)
	wantError(t, sameFileAt(f, filepath.Join(e.root, "src", "keep.txt"), "src/keep.txt"), CodeSandboxViolation)
	if xerr := sameFileAt(f, filepath.Join(e.root, ".env"), ".env"); xerr != nil {
		t.Fatal(xerr)
	}
}

func TestPatchNamingOneFileTwiceRefused(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, "a/x.txt", "x\n")
	mustSymlink(t, "a", filepath.Join(e.root, "alias"))
	patch := "--- a/a/x.txt\n+++ b/a/x.txt\n@@ -1 +1 @@\n-x\n+y\n--- a/alias/x.txt\n+++ b/alias/x.txt\n@@ -1 +1 @@\n-x\n+z\n"
	_, err := e.Targets(newAction(t, "repo.apply_patch", WorkspaceRepo, map[string]any{"patch": patch}))
	if err == nil {
		t.Fatal("a patch changing one file under two names was accepted")
	}
	wantError(t, err.(*Error), CodeInvalidParams)
}
