package executor

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-nomos/nomos/audit"
	"github.com/caddy-nomos/nomos/internal/credentials"
	"github.com/caddy-nomos/nomos/policy"
	"github.com/caddy-nomos/nomos/policy/action"
)

const execResource = "file://workspace/bin/tool"

func execAction(t *testing.T, params map[string]any) *action.Action {
	return newAction(t, "process.exec", execResource, params)
}

func TestProcessExecRunsArgvWithoutShell(t *testing.T) {
	e := newTestExecutor(t, Config{})
	res := mustRun(t, e, execAction(t, map[string]any{"argv": []string{"printf", "%s|%s", "a; echo injected", "$HOME"}}), noObligations)
	if res.Stdout != "a; echo injected|$HOME" || *res.ExitCode != 0 || res.Classification != audit.ResultSuccess {
		t.Fatalf("got %+v", res)
	}
	if res.Metadata["exec_enforcement_mode"] != execModePolicyOnly {
		t.Errorf("metadata %v", res.Metadata)
	}
}

func TestProcessExecEnvironment(t *testing.T) {
	t.Setenv("NOMOS_TEST_ALLOWED", "yes")
	t.Setenv("NOMOS_TEST_NOT_IN_CONFIG", "no")
	e := newTestExecutor(t, Config{EnvAllowlist: []string{"NOMOS_TEST_ALLOWED", "NOMOS_TEST_UNSET"}})
	res := mustRun(t, e, execAction(t, map[string]any{"argv": []string{"env"}}), noObligations)
	if res.Stdout != "" {
		t.Errorf("child inherited an environment: %q", res.Stdout)
	}
	res = mustRun(t, e, execAction(t, map[string]any{
		"argv":               []string{"env"},
		"env_allowlist_keys": []string{"NOMOS_TEST_ALLOWED", "NOMOS_TEST_NOT_IN_CONFIG", "NOMOS_TEST_UNSET"},
	}), noObligations)
	if res.Stdout != "NOMOS_TEST_ALLOWED=yes\n" {
		t.Errorf("env = %q", res.Stdout)
	}
	if keys := res.Metadata["env_keys"].([]string); !slices.Equal(keys, []string{"NOMOS_TEST_ALLOWED"}) {
		t.Errorf("env_keys = %v", keys)
	}
}

func TestProcessExecLeases(t *testing.T) {
	broker, err := credentials.NewBroker([]credentials.Secret{
		{ID: "db_password", EnvKey: "DB_PASSWORD", Value: "pg-pass-Xq81-zz", TTL: time.Minute},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newTestExecutorWith(t, Config{}, broker, testHooks{})
	res := mustRun(t, e, newAction(t, "secrets.checkout", "secret://vault/db_password", map[string]any{"secret_id": "db_password"}), noObligations)
	lease := res.CredentialLeaseID
	if !strings.HasPrefix(lease, "lease_") || strings.Contains(res.Output, "pg-pass") {
		t.Fatalf("checkout result %+v", res)
	}
	echo := map[string]any{"argv": []string{"sh", "-c", `printf '%s' "$DB_PASSWORD"; printf '%s' "$DB_PASSWORD" >&2`}, "credential_lease_ids": []string{lease}}
	res = mustRun(t, e, execAction(t, echo), noObligations)
	if res.Stdout != "[REDACTED]" || res.Stderr != "[REDACTED]" {
		t.Errorf("stdout %q stderr %q: the leased value must reach the child and be redacted", res.Stdout, res.Stderr)
	}
	other := execAction(t, echo)
	other.Principal = "mallory"
	_, xerr := execute(t, e, other, noObligations)
	wantError(t, xerr, CodeCredentialsUnavailable)
	noBroker := newTestExecutor(t, Config{})
	_, xerr = execute(t, noBroker, execAction(t, echo), noObligations)
	wantError(t, xerr, CodeCredentialsUnavailable)
}

func TestProcessExecCwd(t *testing.T) {
	e := newTestExecutor(t, Config{})
	outside := t.TempDir()
	writeFile(t, e.root, "sub/dir/f", "")
	mustSymlink(t, outside, filepath.Join(e.root, "out"))
	res := mustRun(t, e, execAction(t, map[string]any{"argv": []string{"pwd"}, "cwd": "sub/dir"}), noObligations)
	if strings.TrimSpace(res.Stdout) != filepath.Join(e.root, "sub/dir") || res.Metadata["cwd"] != "sub/dir" {
		t.Errorf("pwd = %q, metadata cwd = %v", res.Stdout, res.Metadata["cwd"])
	}
	for cwd, code := range map[string]string{
		"..": CodeSandboxViolation, "sub/../..": CodeSandboxViolation, "/tmp": CodeSandboxViolation,
		"out": CodeSandboxViolation, "missing": CodeNotFound, "sub/dir/f": CodeInvalidParams,
	} {
		_, xerr := execute(t, e, execAction(t, map[string]any{"argv": []string{"pwd"}, "cwd": cwd}), noObligations)
		wantError(t, xerr, code)
	}
}

func TestProcessExecExitCodeIsNotAnError(t *testing.T) {
	e := newTestExecutor(t, Config{})
	res := mustRun(t, e, execAction(t, map[string]any{"argv": []string{"sh", "-c", "echo oops >&2; exit 3"}}), noObligations)
	if *res.ExitCode != 3 || res.Stderr != "oops\n" || res.Classification != audit.ResultExecutionError {
		t.Errorf("got exit %d stderr %q class %s", *res.ExitCode, res.Stderr, res.Classification)
	}
}

func TestProcessExecTimeoutKillsProcessGroup(t *testing.T) {
	e := newTestExecutor(t, Config{ExecTimeout: 300 * time.Millisecond})
	start := time.Now()
	res := mustRun(t, e, execAction(t, map[string]any{"argv": []string{"sh", "-c", "sleep 30 & echo $! > bg.pid; wait"}}), noObligations)
	if time.Since(start) > 10*time.Second {
		t.Fatalf("timeout did not stop the command")
	}
	if res.Classification != audit.ResultExecTimeout || *res.ExitCode != -1 || res.Metadata["timed_out"] != true {
		t.Errorf("got class %s exit %d metadata %v", res.Classification, *res.ExitCode, res.Metadata)
	}
	waitGone(t, readPID(t, e.root, "bg.pid"))
}

func TestProcessExecKillsLeftoversAfterExit(t *testing.T) {
	e := newTestExecutor(t, Config{})
	res := mustRun(t, e, execAction(t, map[string]any{"argv": []string{"sh", "-c", "sleep 30 & echo $! > bg.pid"}}), noObligations)
	if res.Classification != audit.ResultSuccess {
		t.Fatalf("class %s", res.Classification)
	}
	waitGone(t, readPID(t, e.root, "bg.pid"))
}

func TestProcessExecOutputCap(t *testing.T) {
	e := newTestExecutor(t, Config{MaxOutputBytes: 1000, MaxOutputLines: 1 << 20})
	res := mustRun(t, e, execAction(t, map[string]any{"argv": []string{"sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"}}), noObligations)
	if len(res.Stdout) != 1000 || !res.Truncated || res.Classification != audit.ResultOutputLimit {
		t.Errorf("stdout %d bytes, truncated %v, class %s", len(res.Stdout), res.Truncated, res.Classification)
	}
	if res.Metadata["stdout_bytes"] != int64(200000) {
		t.Errorf("stdout_bytes = %v", res.Metadata["stdout_bytes"])
	}
}

func TestProcessExecAuthorization(t *testing.T) {
	e := newTestExecutor(t, Config{})
	constraints := policy.Obligations{ExecConstraints: &policy.ExecMatch{ArgvPatterns: [][]string{{"echo", "status", "**"}, {"printf", "*"}}}}
	legacy := policy.Obligations{ExecAllowlist: [][]string{{"echo", "hi"}, {}}}
	both := policy.Obligations{ExecConstraints: constraints.ExecConstraints, ExecAllowlist: [][]string{{"true"}}}
	empty := policy.Obligations{ExecConstraints: &policy.ExecMatch{}}
	options := policy.Obligations{ExecConstraints: &policy.ExecMatch{ArgvPatterns: [][]string{{"echo", "-**"}, {"printf", "-*", "*"}}}}
	legacyOpt := policy.Obligations{ExecAllowlist: [][]string{{"echo", "-n"}}}
	tests := []struct {
		name string
		ob   policy.Obligations
		argv []string
		code string
	}{
		{"pattern **, none", constraints, []string{"echo", "status"}, ""},
		{"pattern **, some", constraints, []string{"echo", "status", "x", "y"}, ""},
		{"pattern ** takes no option", constraints, []string{"echo", "status", "x", "-n"}, CodeExecConstraintViolation},
		{"pattern -** takes options", options, []string{"echo", "-n", "x", "--", "y"}, ""},
		{"pattern -* takes one option", options, []string{"printf", "--", "x"}, ""},
		{"pattern * takes no option", constraints, []string{"printf", "-v"}, CodeExecConstraintViolation},
		{"pattern *", constraints, []string{"printf", "x"}, ""},
		{"pattern * needs one token", constraints, []string{"printf"}, CodeExecConstraintViolation},
		{"pattern * is one token", constraints, []string{"printf", "x", "y"}, CodeExecConstraintViolation},
		{"no pattern", constraints, []string{"true"}, CodeExecConstraintViolation},
		{"legacy prefix", legacy, []string{"echo", "hi", "there"}, ""},
		{"legacy prefix takes no option after it", legacy, []string{"echo", "hi", "-e", "x"}, CodeExecNotAllowlisted},
		{"legacy prefix may name an option", legacyOpt, []string{"echo", "-n", "x"}, ""},
		{"legacy other", legacy, []string{"echo", "bye"}, CodeExecNotAllowlisted},
		{"constraints win over allowlist", both, []string{"true"}, CodeExecConstraintViolation},
		{"empty constraints allow nothing", empty, []string{"true"}, CodeExecConstraintViolation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, xerr := execute(t, e, execAction(t, map[string]any{"argv": tt.argv}), tt.ob)
			if tt.code == "" {
				if xerr != nil {
					t.Fatalf("refused: %v", xerr)
				}
				return
			}
			wantError(t, xerr, tt.code)
		})
	}
}

func TestMatchArgv(t *testing.T) {
	tests := []struct {
		pattern, argv []string
		want          bool
	}{
		{[]string{"**"}, nil, true},
		{[]string{"**", "x", "**", "x"}, []string{"x", "y", "x"}, true},
		{[]string{"**", "x", "**", "x"}, []string{"x", "y"}, false},
		{[]string{"a", "*", "c"}, []string{"a", "b", "c"}, true},
		{[]string{"a", "*", "c"}, []string{"a", "c"}, false},
		{[]string{"a", "**", "**"}, []string{"a"}, true},
		{[]string{"a*"}, []string{"ab"}, false},
	}
	for _, tt := range tests {
		if got := policy.MatchArgv(tt.pattern, tt.argv); got != tt.want {
			t.Errorf("MatchArgv(%q, %q) = %v", tt.pattern, tt.argv, got)
		}
	}
}

func TestProcessExecParamsAreStrict(t *testing.T) {
	e := newTestExecutor(t, Config{})
	for _, params := range []string{
		`{}`, `{"argv":[]}`, `{"argv":[""]}`, `{"argv":"ls"}`, `{"ARGV":["ls"]}`,
		`{"argv":["ls"],"shell":true}`, `{"argv":["ls"],"env_allowlist_keys":["A=B"]}`,
		`{"argv":["ls"],"cwd":null}`,
	} {
		a := execAction(t, map[string]any{})
		a.Params = []byte(params)
		_, xerr := execute(t, e, a, noObligations)
		wantError(t, xerr, CodeInvalidParams)
	}
	_, xerr := execute(t, e, execAction(t, map[string]any{"argv": []string{"no-such-program-nomos"}}), noObligations)
	wantError(t, xerr, CodeNotFound)
}

func readPID(t *testing.T, root, name string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, root, name)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// waitGone waits for a killed process to die: a signal is delivered
// asynchronously, so this polls its state rather than sleeping blindly.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("process %d outlived its command", pid)
}
