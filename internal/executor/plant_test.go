package executor

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/policy/action"
)

// TestPatchCannotPlantARepositoryAtOnce: the git-metadata check weighs
// every file one patch creates together, so HEAD, objects/ and refs/
// created by the same patch are refused as surely as one after another.
func TestPatchCannotPlantARepositoryAtOnce(t *testing.T) {
	e := newTestExecutor(t, Config{})
	patch := "--- /dev/null\n+++ b/src/evil/HEAD\n@@ -0,0 +1 @@\n+ref: refs/heads/main\n" +
		"--- /dev/null\n+++ b/src/evil/objects/x\n@@ -0,0 +1 @@\n+x\n" +
		"--- /dev/null\n+++ b/src/evil/refs/x\n@@ -0,0 +1 @@\n+x\n" +
		"--- /dev/null\n+++ b/src/evil/config\n@@ -0,0 +1,2 @@\n+[core]\n+\tpager = touch PWNED\n"
	_, xerr := execute(t, e, newAction(t, action.TypeRepoApplyPatch, WorkspaceRepo, map[string]any{"patch": patch}), noObligations)
	wantError(t, xerr, CodeSandboxViolation)
	if _, err := os.Lstat(filepath.Join(e.root, "src", "evil")); err == nil {
		t.Fatal("the refused patch left files behind")
	}
	// HEAD and commondir, the other marker set, in one patch.
	patch = "--- /dev/null\n+++ b/src/evil/HEAD\n@@ -0,0 +1 @@\n+x\n--- /dev/null\n+++ b/src/evil/commondir\n@@ -0,0 +1 @@\n+../..\n"
	_, xerr = execute(t, e, newAction(t, action.TypeRepoApplyPatch, WorkspaceRepo, map[string]any{"patch": patch}), noObligations)
	wantError(t, xerr, CodeSandboxViolation)
	// A patch of ordinary files that happen to share one of the names.
	patch = "--- /dev/null\n+++ b/src/docs/HEAD\n@@ -0,0 +1 @@\n+x\n--- /dev/null\n+++ b/src/docs/refs/x\n@@ -0,0 +1 @@\n+x\n"
	mustRun(t, e, newAction(t, action.TypeRepoApplyPatch, WorkspaceRepo, map[string]any{"patch": patch}), noObligations)
}

// TestConcurrentWritesCannotPlantARepository: two writes that each look
// harmless (HEAD, then refs/x beside an existing objects/) are checked and
// written one at a time, so the second sees the first and is refused.
func TestConcurrentWritesCannotPlantARepository(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "src/evil/objects/x", "x")
	a := newAction(t, action.TypeFSWrite, "file://workspace/src/evil/HEAD", map[string]any{"content": "ref: refs/heads/main\n"})
	b := newAction(t, action.TypeFSWrite, "file://workspace/src/evil/refs/x", map[string]any{"content": "x"})
	var e *Executor
	done := make(chan *Error, 1)
	started := false
	e = newTestExecutorWith(t, Config{WorkspaceRoot: root}, nil, testHooks{beforeCommit: func(rel string) {
		if rel != "src/evil/HEAD" || started {
			return
		}
		started = true
		go func() { // the other request, decided while HEAD is not there yet
			_, xerr := execute(t, e, b, noObligations)
			done <- xerr
		}()
		time.Sleep(100 * time.Millisecond) // without serialization it would commit now
	}})
	mustRun(t, e, a, noObligations)
	wantError(t, <-done, CodeSandboxViolation)
	if _, err := os.Lstat(filepath.Join(root, "src", "evil", "refs")); err == nil {
		t.Fatal("HEAD, objects/ and refs/ all present: a repository was planted")
	}
}
