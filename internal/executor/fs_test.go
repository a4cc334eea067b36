package executor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/policy"
)

func TestFSRead(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, "src/a.go", "package a\n\nfunc A() {}\n")
	res := mustRun(t, e, newAction(t, "fs.read", "file://workspace/src/a.go", map[string]any{}), noObligations)
	if res.Output != "package a\n\nfunc A() {}\n" || res.Truncated || res.Classification != audit.ResultSuccess {
		t.Fatalf("got %+v", res)
	}
	if res.Metadata["bytes_read"] != 23 || res.Metadata["lines_read"] != 3 || res.Metadata["path"] != "src/a.go" {
		t.Errorf("metadata %v", res.Metadata)
	}
}

func TestFSReadCaps(t *testing.T) {
	e := newTestExecutor(t, Config{MaxOutputBytes: 12, MaxOutputLines: 3})
	writeFile(t, e.root, "lines.txt", "1\n2\n3\n4\n5\n")
	writeFile(t, e.root, "long.txt", "héééééééééééé")
	tests := []struct {
		name, file string
		ob         policy.Obligations
		want       string
		truncated  bool
	}{
		{"config lines", "lines.txt", noObligations, "1\n2\n3\n", true},
		{"config bytes, utf8 safe", "long.txt", noObligations, "hééééé", true},
		{"obligation narrower", "lines.txt", policy.Obligations{OutputMaxLines: ptr[int64](1)}, "1\n", true},
		{"obligation wider is ignored", "lines.txt", policy.Obligations{OutputMaxLines: ptr[int64](100)}, "1\n2\n3\n", true},
		{"obligation zero means nothing", "lines.txt", policy.Obligations{OutputMaxBytes: ptr[int64](0)}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustRun(t, e, newAction(t, "fs.read", "file://workspace/"+tt.file, map[string]any{}), tt.ob)
			if res.Output != tt.want || res.Truncated != tt.truncated {
				t.Errorf("got %q truncated=%v, want %q truncated=%v", res.Output, res.Truncated, tt.want, tt.truncated)
			}
			if tt.truncated && res.Classification != audit.ResultOutputLimit {
				t.Errorf("classification %s, want %s", res.Classification, audit.ResultOutputLimit)
			}
		})
	}
}

// A secret that straddles the output cap must not leave a recognizable
// fragment: the executor reads past the cap, redacts, then cuts.
func TestFSReadRedactsBeforeCutting(t *testing.T) {
	e := newTestExecutor(t, Config{MaxOutputBytes: 24})
	token := "ghp_" + strings.Repeat("Ab1", 12)
	writeFile(t, e.root, "log.txt", "0123456789 token="+token+"\n")
	res := mustRun(t, e, newAction(t, "fs.read", "file://workspace/log.txt", map[string]any{}), noObligations)
	if strings.Contains(res.Output, "ghp_") || !res.Truncated {
		t.Fatalf("output %q leaks a token fragment or was not truncated", res.Output)
	}
	if res.Output != "0123456789 token=[REDACT" {
		t.Errorf("output %q", res.Output)
	}
}

func TestFSReadRefusals(t *testing.T) {
	e := newTestExecutor(t, Config{})
	outside := t.TempDir()
	writeFile(t, outside, "secret.txt", "TOP SECRET")
	writeFile(t, e.root, "ok.txt", "fine")
	mustSymlink(t, filepath.Join(outside, "secret.txt"), filepath.Join(e.root, "abs-link"))
	mustSymlink(t, "../"+filepath.Base(outside)+"/secret.txt", filepath.Join(e.root, "rel-link"))
	mustSymlink(t, outside, filepath.Join(e.root, "dir-link"))
	mustSymlink(t, "missing-target", filepath.Join(e.root, "dangling"))
	if err := os.Mkdir(filepath.Join(e.root, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	mkfifo(t, filepath.Join(e.root, "fifo"))
	tests := []struct {
		name, resource string
		params         any
		code           string
	}{
		{"missing", "file://workspace/nope.txt", map[string]any{}, CodeNotFound},
		{"absolute symlink out", "file://workspace/abs-link", map[string]any{}, CodeSandboxViolation},
		{"relative symlink out", "file://workspace/rel-link", map[string]any{}, CodeSandboxViolation},
		{"symlinked directory out", "file://workspace/dir-link/secret.txt", map[string]any{}, CodeSandboxViolation},
		{"dangling symlink", "file://workspace/dangling", map[string]any{}, CodeSandboxViolation},
		{"directory", "file://workspace/dir", map[string]any{}, CodeInvalidResource},
		{"fifo does not hang", "file://workspace/fifo", map[string]any{}, CodeInvalidResource},
		{"params not empty", "file://workspace/ok.txt", map[string]any{"path": "x"}, CodeInvalidParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, xerr := execute(t, e, newAction(t, "fs.read", tt.resource, tt.params), noObligations)
			wantError(t, xerr, tt.code)
			if strings.Contains(xerr.Message, "TOP SECRET") || strings.Contains(xerr.Message, outside) {
				t.Errorf("message %q discloses the outside", xerr.Message)
			}
		})
	}
}

func TestFSReadFollowsSymlinkInsideRoot(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, "real/a.txt", "inside")
	mustSymlink(t, "real", filepath.Join(e.root, "alias"))
	res := mustRun(t, e, newAction(t, "fs.read", "file://workspace/alias/a.txt", map[string]any{}), noObligations)
	if res.Output != "inside" {
		t.Errorf("got %q", res.Output)
	}
}

func TestResourceMustBeNormalized(t *testing.T) {
	e := newTestExecutor(t, Config{})
	a := newAction(t, "fs.read", "file://workspace/ok.txt", map[string]any{})
	for _, r := range []string{"file://workspace/a/../ok.txt", "file://workspace//ok.txt", "file://other/ok.txt", "FILE://workspace/ok.txt"} {
		b := *a
		b.Resource = r
		_, xerr := execute(t, e, &b, noObligations)
		wantError(t, xerr, CodeInvalidResource)
	}
}

func TestFSWrite(t *testing.T) {
	e := newTestExecutor(t, Config{})
	res := mustRun(t, e, newAction(t, "fs.write", "file://workspace/new/dir/f.txt", map[string]any{"content": "hello\n"}), noObligations)
	if got := readFile(t, e.root, "new/dir/f.txt"); got != "hello\n" {
		t.Fatalf("file holds %q", got)
	}
	if res.BytesWritten != 6 || strings.Contains(res.Output, "hello") {
		t.Errorf("result %+v", res)
	}
	fi, _ := os.Stat(filepath.Join(e.root, "new/dir/f.txt"))
	if fi.Mode().Perm() != newFileMode {
		t.Errorf("new file mode %v, want %v", fi.Mode().Perm(), newFileMode)
	}
	writeFile(t, e.root, "exec.sh", "old")
	os.Chmod(filepath.Join(e.root, "exec.sh"), 0o755)
	mustRun(t, e, newAction(t, "fs.write", "file://workspace/exec.sh", map[string]any{"content": "new"}), noObligations)
	fi, _ = os.Stat(filepath.Join(e.root, "exec.sh"))
	if readFile(t, e.root, "exec.sh") != "new" || fi.Mode().Perm() != 0o755 {
		t.Errorf("replace: content %q mode %v", readFile(t, e.root, "exec.sh"), fi.Mode().Perm())
	}
	assertNoTempFiles(t, e.root)
}

func TestFSWriteParamsAreStrict(t *testing.T) {
	e := newTestExecutor(t, Config{MaxOutputBytes: 8})
	for _, params := range []string{
		`{}`, `{"content":""}`, `{"content":"x","mode":"0777"}`, `{"Content":"x"}`,
		`{"content":null}`, `{"content":7}`, `{"content":"123456789"}`,
	} {
		a := newAction(t, "fs.write", "file://workspace/f.txt", map[string]any{})
		a.Params = []byte(params)
		_, xerr := execute(t, e, a, noObligations)
		wantError(t, xerr, CodeInvalidParams)
	}
	if _, err := os.Stat(filepath.Join(e.root, "f.txt")); !os.IsNotExist(err) {
		t.Error("a refused write created the file")
	}
}

func TestFSWriteSymlinkEscapes(t *testing.T) {
	e := newTestExecutor(t, Config{})
	outside := t.TempDir()
	writeFile(t, outside, "target.txt", "original")
	mustSymlink(t, outside, filepath.Join(e.root, "out"))
	mustSymlink(t, filepath.Join(outside, "target.txt"), filepath.Join(e.root, "link.txt"))
	for _, r := range []string{"file://workspace/out/target.txt", "file://workspace/out/new.txt", "file://workspace/link.txt"} {
		_, xerr := execute(t, e, newAction(t, "fs.write", r, map[string]any{"content": "pwned"}), noObligations)
		wantError(t, xerr, CodeSandboxViolation)
	}
	assertOutsideUntouched(t, outside, map[string]string{"target.txt": "original"})
}

// A parent directory swapped for a symlink between staging and commit must
// not redirect the write outside the workspace.
func TestFSWriteParentSwappedMidRequest(t *testing.T) {
	for _, swap := range []struct {
		name string
		do   func(t *testing.T, root, outside string)
	}{
		{"parent replaced by symlink", func(t *testing.T, root, outside string) {
			mustRename(t, filepath.Join(root, "sub"), filepath.Join(root, "sub.orig"))
			mustSymlink(t, outside, filepath.Join(root, "sub"))
		}},
		{"parent moved outside", func(t *testing.T, root, outside string) {
			mustRename(t, filepath.Join(root, "sub"), filepath.Join(outside, "moved"))
		}},
	} {
		t.Run(swap.name, func(t *testing.T) {
			outside := t.TempDir()
			root := t.TempDir()
			writeFile(t, root, "sub/keep.txt", "keep")
			swapped := false
			e := newTestExecutorWith(t, Config{WorkspaceRoot: root}, nil, testHooks{beforeCommit: func(string) {
				swap.do(t, root, outside)
				swapped = true
			}})
			_, xerr := execute(t, e, newAction(t, "fs.write", "file://workspace/sub/f.txt", map[string]any{"content": "pwned"}), noObligations)
			if !swapped {
				t.Fatal("hook did not run")
			}
			wantError(t, xerr, CodeSandboxViolation)
			assertNoFileNamed(t, outside, "f.txt")
			assertNoTempFiles(t, outside)
			assertNoTempFiles(t, root)
		})
	}
}

func assertNoFileNamed(t *testing.T, dir, name string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Name() == name {
			t.Errorf("%s was written at %s", name, p)
		}
		return nil
	})
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".nomos-") {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

func assertOutsideUntouched(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(want) {
		t.Errorf("outside dir has %d entries, want %d", len(entries), len(want))
	}
	for name, content := range want {
		if got := readFile(t, dir, name); got != content {
			t.Errorf("outside %s = %q, want %q", name, got, content)
		}
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}
