package executor

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/caddy-nomos/nomos/policy"
)

// landlockExecutor is a landlock-profile executor on a git workspace with
// a secret in .env, or the test is skipped where the kernel lacks Landlock.
func landlockExecutor(t *testing.T) *Executor {
	t.Helper()
	if !landlockSupported {
		t.Skip("landlock needs linux")
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	root := t.TempDir()
	gitInit(t, root)
	e, err := newExecutor(Config{WorkspaceRoot: root, SandboxProfile: "landlock", Launcher: testLauncher}, nil, nil, testHooks{})
	if err != nil {
		t.Skipf("this kernel does not provide landlock: %v", err)
	}
	return e
}

func gitInit(t *testing.T, root string) {
	t.Helper()
	writeFile(t, root, "src/main.go", "package main\n")
	writeFile(t, root, ".env", "API_TOKEN=landlock-canary-7731\n")
	for _, args := range [][]string{
		{"init", "-q"}, {"add", "src"},
		{"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "init"},
	} {
		cmd := exec.Command("git", args...)
		cmd.Dir = root
		cmd.Env = []string{"HOME=" + root, "GIT_CONFIG_NOSYSTEM=1"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
}

var landlockMode = policy.Obligations{SandboxMode: "landlock"}

// What a permitted command needs keeps working under the sandbox: git
// reads the repository, and the child may write where exec_write_paths
// says.
func TestLandlockAllowsWhatIsPermitted(t *testing.T) {
	e := landlockExecutor(t)
	res := mustRun(t, e, execAction(t, map[string]any{"argv": []string{"git", "log", "--oneline"}}), landlockMode)
	if res.ExitCode == nil || *res.ExitCode != 0 || !strings.Contains(res.Stdout, "init") {
		t.Fatalf("git log under landlock: exit %v stdout %q stderr %q", res.ExitCode, res.Stdout, res.Stderr)
	}
	res = mustRun(t, e, execAction(t, map[string]any{"argv": []string{"git", "status", "--short"}}), landlockMode)
	if *res.ExitCode != 0 || !strings.Contains(res.Stdout, ".env") {
		t.Fatalf("git status under landlock: exit %v stdout %q stderr %q", *res.ExitCode, res.Stdout, res.Stderr)
	}
	if res.Metadata["landlock_abi"] != e.landlockABI || e.landlockABI < minLandlockABI {
		t.Errorf("metadata does not name the landlock rule set: %v", res.Metadata)
	}
	ob := landlockMode
	ob.ExecWritePaths = []string{"src"}
	res = mustRun(t, e, execAction(t, map[string]any{"argv": []string{"touch", "src/new.txt"}}), ob)
	if *res.ExitCode != 0 {
		t.Fatalf("a write to a granted path failed: %q", res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(e.root, "src/new.txt")); err != nil {
		t.Fatal(err)
	}
	// A child started by root keeps no capability (raw sockets, mknod,
	// chown, permission overrides).
	if os.Geteuid() == 0 {
		res = mustRun(t, e, execAction(t, map[string]any{"argv": []string{"grep", "-E", "^Cap(Eff|Prm|Bnd|Amb)", "/proc/self/status"}}), landlockMode)
		for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
			if !strings.HasSuffix(line, "0000000000000000") {
				t.Errorf("capabilities left in the confined child: %q", res.Stdout)
			}
		}
		if strings.Count(res.Stdout, "\n") != 4 {
			t.Errorf("capability lines: %q %q", res.Stdout, res.Stderr)
		}
	}
	// The launcher sets the local profile's limits before the exec.
	res = mustRun(t, e, execAction(t, map[string]any{"argv": []string{"sh", "-c", "ulimit -n; ulimit -c"}}), landlockMode)
	if res.Stdout != "1024\n0\n" {
		t.Errorf("limits in the confined child: %q", res.Stdout)
	}
}

// Landlock, not policy, refuses these: each command is allowed, and the
// kernel stops the effect.
func TestLandlockBlocks(t *testing.T) {
	e := landlockExecutor(t)
	outside := t.TempDir()
	ob := landlockMode
	ob.ExecWritePaths = []string{"src"}
	before := readFile(t, e.root, ".git/config")
	tests := []struct {
		name string
		argv []string
	}{
		{"write .git/config", []string{"sh", "-c", "printf '[core]\\n\\tfsmonitor = touch pwned\\n' >> .git/config"}},
		{"git writes .git/config", []string{"git", "log", "-1", "--format=[core]%n fsmonitor = touch pwned%n", "--output=.git/config"}},
		{"write outside the workspace", []string{"git", "log", "-1", "--output=" + filepath.Join(outside, "leak")}},
		{"write the workspace root", []string{"touch", "rootfile"}},
		{"write a hook", []string{"sh", "-c", "mkdir -p .git/hooks && echo x > .git/hooks/post-index-change"}},
		{"read outside the workspace", []string{"cat", filepath.Join(outside, "secret")}},
		{"read the parent environment", []string{"sh", "-c", "cat /proc/" + strconv.Itoa(os.Getpid()) + "/environ"}},
	}
	if os.Geteuid() == 0 {
		// Only root may mknod at all: as root, a device node in a granted
		// path would read and write the disk past every other rule.
		tests = append(tests, struct {
			name string
			argv []string
		}{"make a device node in a granted path", []string{"sh", "-c", "mknod src/kmsg c 1 11 && head -c 64 src/kmsg"}},
			struct {
				name string
				argv []string
			}{"make a block device in a granted path", []string{"mknod", "src/disk", "b", "7", "0"}})
	}
	writeFile(t, outside, "secret", "outside-canary-5521")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, xerr := execute(t, e, execAction(t, map[string]any{"argv": tt.argv}), ob)
			if xerr != nil {
				t.Fatalf("refused before running: %v", xerr)
			}
			if *res.ExitCode == 0 {
				t.Errorf("%v succeeded under landlock: %q %q", tt.argv, res.Stdout, res.Stderr)
			}
			if strings.Contains(res.Stdout, "outside-canary") {
				t.Error("read a file outside the workspace")
			}
			if !strings.Contains(strings.ToLower(res.Stderr), "permission denied") {
				t.Errorf("failed for another reason than the sandbox: %q", res.Stderr)
			}
		})
	}
	if got := readFile(t, e.root, ".git/config"); got != before {
		t.Errorf(".git/config changed:\n%s", got)
	}
	// The control: without the sandbox the same command does change it.
	local := newTestExecutor(t, Config{WorkspaceRoot: e.root, SandboxProfile: "local"})
	mustRun(t, local, execAction(t, map[string]any{"argv": tests[0].argv}), noObligations)
	if readFile(t, e.root, ".git/config") == before {
		t.Error("the control write did not happen: the test proves nothing")
	}
	for _, p := range []string{filepath.Join(outside, "leak"), filepath.Join(e.root, "rootfile"), filepath.Join(e.root, "pwned")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s exists", p)
		}
	}
}

// A TCP connect from a confined child fails unless net_allowlist opens
// its port; with it, the connect goes through.
func TestLandlockNetwork(t *testing.T) {
	e := landlockExecutor(t)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello-from-server\n"))
			c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	connect := []string{"bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/" + port + " && cat <&3"}
	res := mustRun(t, e, execAction(t, map[string]any{"argv": connect}), landlockMode)
	if *res.ExitCode == 0 || strings.Contains(res.Stdout, "hello-from-server") {
		t.Fatalf("a TCP connect succeeded without a net_allowlist: %q %q", res.Stdout, res.Stderr)
	}
	ob := landlockMode
	ob.NetAllowlist = []string{"127.0.0.1:" + port}
	res = mustRun(t, e, execAction(t, map[string]any{"argv": connect}), ob)
	if *res.ExitCode != 0 || !strings.Contains(res.Stdout, "hello-from-server") {
		t.Fatalf("a TCP connect to an allowed port failed: %q %q", res.Stdout, res.Stderr)
	}
}

// exec_write_paths cannot be turned into a grant on .git or outside, and a
// repository planted in a writable directory is never the one git uses.
func TestLandlockWritePaths(t *testing.T) {
	e := landlockExecutor(t)
	if err := os.Symlink(".git", filepath.Join(e.root, "gitlink")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(e.root, "outlink")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"gitlink", "outlink", ".git", "src/../.git", "."} {
		ob := landlockMode
		ob.ExecWritePaths = []string{p}
		_, xerr := execute(t, e, execAction(t, map[string]any{"argv": []string{"touch", "x"}}), ob)
		wantError(t, xerr, CodeSandboxViolation)
	}
	ob := landlockMode
	ob.ExecWritePaths = []string{"src"}
	plant := "mkdir -p .git && git init -q . 2>/dev/null; printf '[core]\\n\\tfsmonitor = touch planted\\n' >> .git/config"
	res := mustRun(t, e, execAction(t, map[string]any{"argv": []string{"sh", "-c", plant}, "cwd": "src"}), ob)
	if _, err := os.Stat(filepath.Join(e.root, "src/.git/config")); err != nil {
		t.Fatalf("the nested repository was not planted (%q): %v", res.Stderr, err)
	}
	res = mustRun(t, e, execAction(t, map[string]any{"argv": []string{"git", "status"}, "cwd": "src"}), ob)
	if *res.ExitCode != 0 {
		t.Fatalf("git status in src: %q", res.Stderr)
	}
	for _, p := range []string{"src/planted", "planted"} {
		if _, err := os.Stat(filepath.Join(e.root, p)); err == nil {
			t.Errorf("the planted fsmonitor ran (%s)", p)
		}
	}
}

// SandboxReadPaths open more trees to reading, and nothing else.
func TestLandlockReadPaths(t *testing.T) {
	for _, bad := range []string{"relative", "/", "/opt/../etc", "/opt/"} {
		if _, err := newExecutor(Config{WorkspaceRoot: t.TempDir(), SandboxReadPaths: []string{bad}}, nil, nil, testHooks{}); err == nil {
			t.Errorf("read path %q accepted", bad)
		}
	}
	e := landlockExecutor(t)
	extra := t.TempDir()
	writeFile(t, extra, "tool.txt", "toolchain-file")
	cat := execAction(t, map[string]any{"argv": []string{"cat", filepath.Join(extra, "tool.txt")}})
	if res := mustRun(t, e, cat, landlockMode); *res.ExitCode == 0 {
		t.Fatal("read outside the workspace without a read path")
	}
	e2 := newTestExecutor(t, Config{WorkspaceRoot: e.root, SandboxProfile: "landlock", SandboxReadPaths: []string{extra}})
	res := mustRun(t, e2, cat, landlockMode)
	if *res.ExitCode != 0 || res.Stdout != "toolchain-file" {
		t.Fatalf("granted read failed: %q %q", res.Stdout, res.Stderr)
	}
	touch := execAction(t, map[string]any{"argv": []string{"touch", filepath.Join(extra, "new")}})
	if res := mustRun(t, e2, touch, landlockMode); *res.ExitCode == 0 {
		t.Fatal("a read path was writable")
	}
}

// A descriptor Nomos inherited without close-on-exec (a supervisor's pipe,
// a socket-activation listener) does not reach the confined program:
// Landlock does not govern what is already open.
func TestLandlockInheritedDescriptorsClosed(t *testing.T) {
	e := landlockExecutor(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	const leaked = 77
	if err := syscall.Dup2(int(w.Fd()), leaked); err != nil { // Dup2 leaves close-on-exec off
		t.Fatal(err)
	}
	defer syscall.Close(leaked)
	res := mustRun(t, e, execAction(t, map[string]any{"argv": []string{"ls", "/proc/self/fd"}}), landlockMode)
	fds := strings.Fields(res.Stdout)
	if *res.ExitCode != 0 || len(fds) == 0 {
		t.Fatalf("ls /proc/self/fd: %q %q", res.Stdout, res.Stderr)
	}
	if slices.Contains(fds, strconv.Itoa(leaked)) {
		t.Fatalf("the confined program holds the inherited descriptor %d: %v", leaked, fds)
	}
	// The control: an unconfined child does inherit it.
	local := newTestExecutor(t, Config{WorkspaceRoot: e.root, SandboxProfile: "local"})
	res = mustRun(t, local, execAction(t, map[string]any{"argv": []string{"ls", "/proc/self/fd"}}), noObligations)
	if !slices.Contains(strings.Fields(res.Stdout), strconv.Itoa(leaked)) {
		t.Fatalf("the control did not inherit descriptor %d: the test proves nothing: %q", leaked, res.Stdout)
	}
}
