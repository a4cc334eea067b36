package executor

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const gitDiff = `diff --git a/src/main.go b/src/main.go
index 83db48f..bf269f4 100644
--- a/src/main.go
+++ b/src/main.go
@@ -1,5 +1,5 @@
 package main
 
 func main() {
-	println("hello")
+	println("hello, world")
 }
@@ -8,3 +8,4 @@ func helper() {
 	a := 1
 	b := 2
 	_ = a + b
+	_ = b
diff --git a/docs/new.md b/docs/new.md
new file mode 100644
index 0000000..3b18e51
--- /dev/null
+++ b/docs/new.md
@@ -0,0 +1,2 @@
+# New
+no trailing newline
\ No newline at end of file
diff --git a/old.txt b/old.txt
deleted file mode 100644
--- a/old.txt
+++ /dev/null
@@ -1,2 +0,0 @@
-gone
-too
`

const mainGo = "package main\n\nfunc main() {\n\tprintln(\"hello\")\n}\n\nfunc helper() {\n\ta := 1\n\tb := 2\n\t_ = a + b\n"

func TestPatchPaths(t *testing.T) {
	tests := []struct {
		name, patch string
		want        []string
	}{
		{"git multi-file", gitDiff, []string{"docs/new.md", "old.txt", "src/main.go"}},
		{"no prefixes, timestamps", "--- x.txt\t2024-01-01 00:00:00\n+++ x.txt\t2024-01-02 00:00:00\n@@ -1 +1 @@\n-a\n+b\n", []string{"x.txt"}},
		{"quoted path", "--- \"a/sp ace\\303\\251.txt\"\n+++ \"b/sp ace\\303\\251.txt\"\n@@ -1 +1 @@\n-a\n+b\n", []string{"sp aceé.txt"}},
		{"removed line that looks like a header", "--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1 @@\n--- comment\n select 1;\n", []string{"q.sql"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PatchPaths(tt.patch)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("PatchPaths = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestPatchParseErrors(t *testing.T) {
	tests := map[string]string{
		"empty":           "",
		"prose":           "please change the file",
		"rename":          "diff --git a/x b/y\nsimilarity index 90%\nrename from x\nrename to y\n",
		"renamed by hunk": "--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
		"binary":          "diff --git a/x.png b/x.png\nGIT binary patch\nliteral 0\n",
		"mode change":     "diff --git a/x b/x\nold mode 100644\nnew mode 100755\n",
		"no plus header":  "--- a/x\n@@ -1 +1 @@\n-a\n+b\n",
		"no hunks":        "--- a/x\n+++ b/x\n",
		"cut short":       "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n",
		"bad line":        "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n*b\n",
		"changed twice":   "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-b\n+c\n",
		"both dev null":   "--- /dev/null\n+++ /dev/null\n@@ -0,0 +1 @@\n+a\n",
	}
	for name, patch := range tests {
		if _, err := PatchPaths(patch); err == nil {
			t.Errorf("%s: PatchPaths accepted %q", name, patch)
		}
	}
}

func TestApplyPatchMultiFile(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, "src/main.go", mainGo)
	writeFile(t, e.root, "old.txt", "gone\ntoo\n")
	res := mustRun(t, e, newAction(t, "repo.apply_patch", WorkspaceRepo, map[string]any{"patch": gitDiff}), noObligations)
	want := strings.Replace(mainGo, `"hello"`, `"hello, world"`, 1) + "\t_ = b\n"
	if got := readFile(t, e.root, "src/main.go"); got != want {
		t.Errorf("main.go =\n%s\nwant\n%s", got, want)
	}
	if got := readFile(t, e.root, "docs/new.md"); got != "# New\nno trailing newline" {
		t.Errorf("new.md = %q", got)
	}
	if _, err := os.Stat(filepath.Join(e.root, "old.txt")); !os.IsNotExist(err) {
		t.Error("old.txt was not deleted")
	}
	files := res.Metadata["files"].([]map[string]any)
	if len(files) != 3 || files[0]["op"] != "modified" || files[1]["op"] != "created" || files[2]["op"] != "deleted" {
		t.Errorf("files metadata %v", files)
	}
	assertNoTempFiles(t, e.root)
}

func TestApplyPatchLineEndingsAndOffsets(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, "crlf.txt", "one\r\ntwo\r\nthree\r\n")
	writeFile(t, e.root, "shifted.txt", "x\ny\nz\na\nb\nc\n")
	writeFile(t, e.root, "ambiguous.txt", "a\nb\na\nb\n")
	patch := "--- a/crlf.txt\n+++ b/crlf.txt\n@@ -2 +2 @@\n-two\r\n+TWO\r\n" +
		// wrong line numbers, unique context: applied where the context is
		"--- a/shifted.txt\n+++ b/shifted.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n"
	mustRun(t, e, newAction(t, "repo.apply_patch", WorkspaceRepo, map[string]any{"patch": patch}), noObligations)
	if got := readFile(t, e.root, "crlf.txt"); got != "one\r\nTWO\r\nthree\r\n" {
		t.Errorf("crlf.txt = %q", got)
	}
	if got := readFile(t, e.root, "shifted.txt"); got != "x\ny\nz\na\nB\nc\n" {
		t.Errorf("shifted.txt = %q", got)
	}
	ambiguous := "--- a/ambiguous.txt\n+++ b/ambiguous.txt\n@@ -7,2 +7,2 @@\n a\n-b\n+B\n"
	_, xerr := execute(t, e, newAction(t, "repo.apply_patch", WorkspaceRepo, map[string]any{"patch": ambiguous}), noObligations)
	wantError(t, xerr, CodeInvalidParams)
	if !strings.Contains(xerr.Message, "more than once") {
		t.Errorf("message %q", xerr.Message)
	}
}

// A patch whose last file does not apply changes nothing: no file, no
// directory, no temporary file.
func TestApplyPatchAllOrNothing(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, "a.txt", "a\n")
	writeFile(t, e.root, "c.txt", "c\n")
	patch := "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+A\n" +
		"--- /dev/null\n+++ b/new/dir/b.txt\n@@ -0,0 +1 @@\n+b\n" +
		"--- a/c.txt\n+++ b/c.txt\n@@ -1 +1 @@\n-not c\n+C\n"
	_, xerr := execute(t, e, newAction(t, "repo.apply_patch", WorkspaceRepo, map[string]any{"patch": patch}), noObligations)
	wantError(t, xerr, CodeInvalidParams)
	if readFile(t, e.root, "a.txt") != "a\n" || readFile(t, e.root, "c.txt") != "c\n" {
		t.Error("a failed patch changed a file")
	}
	if _, err := os.Stat(filepath.Join(e.root, "new")); !os.IsNotExist(err) {
		t.Error("a failed patch left a directory behind")
	}
	assertNoTempFiles(t, e.root)
}

// When a later commit fails, the files already committed are restored.
func TestApplyPatchRollsBackCommittedFiles(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	writeFile(t, root, "a.txt", "a\n")
	writeFile(t, root, "gone.txt", "bye\n")
	writeFile(t, root, "z/c.txt", "c\n")
	e := newTestExecutorWith(t, Config{WorkspaceRoot: root}, nil, testHooks{beforeCommit: func(rel string) {
		if rel == "z/c.txt" {
			mustRename(t, filepath.Join(root, "z"), filepath.Join(root, "z.orig"))
			mustSymlink(t, outside, filepath.Join(root, "z"))
		}
	}})
	patch := "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-a\n+A\n" +
		"--- /dev/null\n+++ b/b/new.txt\n@@ -0,0 +1 @@\n+b\n" +
		"--- a/gone.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n" +
		"--- a/z/c.txt\n+++ b/z/c.txt\n@@ -1 +1 @@\n-c\n+C\n"
	_, xerr := execute(t, e, newAction(t, "repo.apply_patch", WorkspaceRepo, map[string]any{"patch": patch}), noObligations)
	wantError(t, xerr, CodeSandboxViolation)
	if readFile(t, root, "a.txt") != "a\n" || readFile(t, root, "gone.txt") != "bye\n" {
		t.Error("rollback did not restore a.txt and gone.txt")
	}
	if _, err := os.Stat(filepath.Join(root, "b")); !os.IsNotExist(err) {
		t.Error("rollback left the created file or its directory")
	}
	assertOutsideUntouched(t, outside, nil)
	assertNoTempFiles(t, root)
}

func TestApplyPatchWholeFile(t *testing.T) {
	e := newTestExecutor(t, Config{})
	for _, path := range []string{"./docs/readme.md", `docs\readme.md`} {
		mustRun(t, e, newAction(t, "repo.apply_patch", WorkspaceRepo, map[string]any{"path": path, "content": "v:" + path}), noObligations)
		if got := readFile(t, e.root, "docs/readme.md"); got != "v:"+path {
			t.Errorf("%s: file holds %q", path, got)
		}
	}
}

func TestApplyPatchRefusals(t *testing.T) {
	e := newTestExecutor(t, Config{})
	outside := t.TempDir()
	mustSymlink(t, outside, filepath.Join(e.root, "out"))
	writeFile(t, e.root, "exists.txt", "x\n")
	writeFile(t, e.root, "keep.txt", "keep\n")
	tests := []struct {
		name     string
		resource string
		params   map[string]any
		code     string
	}{
		{"traversal in diff", WorkspaceRepo, map[string]any{"patch": "--- /dev/null\n+++ b/../x.txt\n@@ -0,0 +1 @@\n+x\n"}, CodeInvalidParams},
		{"absolute path in diff", WorkspaceRepo, map[string]any{"patch": "--- /dev/null\n+++ /etc/cron.d/x\n@@ -0,0 +1 @@\n+x\n"}, CodeInvalidParams},
		{"traversal in path", WorkspaceRepo, map[string]any{"path": "../x.txt", "content": "x"}, CodeInvalidParams},
		{"symlink out", WorkspaceRepo, map[string]any{"patch": "--- a/keep.txt\n+++ b/keep.txt\n@@ -1 +1 @@\n-keep\n+KEEP\n--- /dev/null\n+++ b/out/x.txt\n@@ -0,0 +1 @@\n+x\n"}, CodeSandboxViolation},
		{"create existing", WorkspaceRepo, map[string]any{"patch": "--- /dev/null\n+++ b/exists.txt\n@@ -0,0 +1 @@\n+x\n"}, CodeInvalidParams},
		{"modify missing", WorkspaceRepo, map[string]any{"patch": "--- a/missing.txt\n+++ b/missing.txt\n@@ -1 +1 @@\n-a\n+b\n"}, CodeNotFound},
		{"partial delete", WorkspaceRepo, map[string]any{"patch": "--- a/exists.txt\n+++ /dev/null\n@@ -0,0 +0,0 @@\n"}, CodeInvalidParams},
		{"both forms", WorkspaceRepo, map[string]any{"patch": gitDiff, "path": "a", "content": "b"}, CodeInvalidParams},
		{"neither form", WorkspaceRepo, map[string]any{"path": "a"}, CodeInvalidParams},
		{"unknown key", WorkspaceRepo, map[string]any{"patch": gitDiff, "strip": 1}, CodeInvalidParams},
		{"other repo", "repo://acme/other", map[string]any{"path": "a", "content": "b"}, CodeInvalidResource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, xerr := execute(t, e, newAction(t, "repo.apply_patch", tt.resource, tt.params), noObligations)
			wantError(t, xerr, tt.code)
		})
	}
	if readFile(t, e.root, "keep.txt") != "keep\n" || readFile(t, e.root, "exists.txt") != "x\n" {
		t.Error("a refused patch changed a file")
	}
	assertOutsideUntouched(t, outside, nil)
}

func TestApplyPatchErrorIsRedacted(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, "cfg.env", "x\n")
	token := "ghp_" + strings.Repeat("Zz9", 12)
	patch := "--- a/cfg.env\n+++ b/cfg.env\n@@ -1 +1 @@\n-TOKEN=" + token + "\n+TOKEN=\n"
	_, xerr := execute(t, e, newAction(t, "repo.apply_patch", WorkspaceRepo, map[string]any{"patch": patch}), noObligations)
	wantError(t, xerr, CodeInvalidParams)
	if strings.Contains(xerr.Message, token) || !strings.Contains(xerr.Message, "[REDACTED]") {
		t.Errorf("message %q", xerr.Message)
	}
}

func FuzzParsePatch(f *testing.F) {
	f.Add(gitDiff)
	f.Add("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n")
	f.Fuzz(func(t *testing.T, patch string) {
		files, err := parsePatch(patch)
		if err != nil {
			return
		}
		for _, fp := range files {
			for _, h := range fp.hunks {
				if len(h.old) != h.oldLines || len(h.new) != h.newLines {
					t.Fatalf("hunk counts disagree: %+v", h)
				}
				_, _ = applyHunks(strings.Join(h.old, ""), []hunk{h})
			}
		}
	})
}
