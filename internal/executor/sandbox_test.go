package executor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-nomos/nomos/policy"
)

// An obligation stronger than the host's profile is refused before any side
// effect, whatever the action.
func TestSandboxRequiredBeforeSideEffects(t *testing.T) {
	e := newTestExecutor(t, Config{})
	for _, mode := range []string{"local", "landlock", "container", "vm"} {
		ob := policy.Obligations{SandboxMode: mode}
		_, xerr := execute(t, e, newAction(t, "fs.write", "file://workspace/w.txt", map[string]any{"content": "x"}), ob)
		wantError(t, xerr, CodeSandboxRequired)
		_, xerr = execute(t, e, execAction(t, map[string]any{"argv": []string{"touch", "ran"}}), ob)
		wantError(t, xerr, CodeSandboxRequired)
	}
	for _, name := range []string{"w.txt", "ran"} {
		if _, err := os.Stat(filepath.Join(e.root, name)); !os.IsNotExist(err) {
			t.Errorf("%s exists: a refused action had a side effect", name)
		}
	}
	mustRun(t, e, execAction(t, map[string]any{"argv": []string{"true"}}), policy.Obligations{SandboxMode: "none"})
}

func TestSandboxProfiles(t *testing.T) {
	local := newTestExecutor(t, Config{SandboxProfile: "local"})
	mustRun(t, local, execAction(t, map[string]any{"argv": []string{"true"}}), policy.Obligations{SandboxMode: "local"})
	_, xerr := execute(t, local, execAction(t, map[string]any{"argv": []string{"true"}}), policy.Obligations{SandboxMode: "container"})
	wantError(t, xerr, CodeSandboxRequired)

	if _, err := New(Config{WorkspaceRoot: t.TempDir(), SandboxProfile: "jail"}, nil, nil); err == nil {
		t.Error("New accepted an unknown profile")
	}
	_, err := newExecutor(Config{WorkspaceRoot: t.TempDir(), SandboxProfile: "container"}, nil, nil,
		testHooks{probeContainer: func() error { return errors.New("missing evidence: rootless") }})
	if err == nil || !strings.Contains(err.Error(), "rootless") {
		t.Errorf("container without evidence: err = %v", err)
	}
	container := newTestExecutorWith(t, Config{SandboxProfile: "container"}, nil, testHooks{probeContainer: func() error { return nil }})
	mustRun(t, container, execAction(t, map[string]any{"argv": []string{"true"}}), policy.Obligations{SandboxMode: "container"})
}

// This test host is not a locked-down container, so the real probe must
// refuse to claim one.
func TestContainerProbeOnThisHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the probe may legitimately pass for a rootless container user")
	}
	if _, err := New(Config{WorkspaceRoot: t.TempDir(), SandboxProfile: "container"}, nil, nil); err == nil {
		t.Error("the container profile was granted on a host running as root")
	}
}

func TestLocalProfileSetsLimits(t *testing.T) {
	var limits string
	e := newTestExecutorWith(t, Config{SandboxProfile: "local"}, nil, testHooks{afterStart: func(pid int) {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
		limits = string(b)
	}})
	mustRun(t, e, execAction(t, map[string]any{"argv": []string{"sleep", "0"}}), noObligations)
	for _, want := range []string{
		"Max core file size        0                    0",
		"Max open files            1024                 1024",
		"Max file size             268435456            268435456",
	} {
		if !strings.Contains(limits, want) {
			t.Errorf("limits lack %q:\n%s", want, limits)
		}
	}
}

func TestDispatchRefusals(t *testing.T) {
	e := newTestExecutor(t, Config{})
	a := newAction(t, "fs.read", "file://workspace/x", map[string]any{})
	for _, d := range []string{policy.Deny, policy.RequireApproval, ""} {
		_, err := e.Execute(context.Background(), a, policy.Decision{Decision: d}, nil)
		var xerr *Error
		errors.As(err, &xerr)
		wantError(t, xerr, CodeNotAllowed)
	}
	_, err := e.Execute(context.Background(), nil, allow(noObligations), nil)
	if err == nil {
		t.Error("nil action accepted")
	}
	_, xerr := execute(t, e, newAction(t, "payments.refund", "stripe://acct/ch_1", map[string]any{}), noObligations)
	wantError(t, xerr, CodeUnsupportedAction)
}

func TestRedactObligation(t *testing.T) {
	e := newTestExecutor(t, Config{})
	writeFile(t, e.root, "orders.txt", "order 12345 for card 4111-1111-1111-1111\n")
	a := newAction(t, "fs.read", "file://workspace/orders.txt", map[string]any{})
	res := mustRun(t, e, a, policy.Obligations{Redact: []string{`\d{4}-\d{4}-\d{4}-\d{4}`}})
	if res.Output != "order 12345 for card [REDACTED]\n" {
		t.Errorf("output %q", res.Output)
	}
	_, xerr := execute(t, e, a, policy.Obligations{Redact: []string{`(`}})
	wantError(t, xerr, CodeExecutionError)
}

func TestCapabilities(t *testing.T) {
	e := newTestExecutor(t, Config{SandboxProfile: "local", AllowedPrivateCIDRs: []string{"10.1.0.0/16"}})
	c := e.Capabilities()
	if c["sandbox_profile"] != "local" || c["workspace_root"] != e.root || c["max_output_bytes"] != int64(DefaultMaxOutputBytes) {
		t.Errorf("capabilities %v", c)
	}
	if got := strings.Join(c["sandbox_profiles"].([]string), ","); got != "none,local" {
		t.Errorf("profiles %s", got)
	}
	if got := strings.Join(c["action_types"].([]string), ","); got != "fs.read,fs.write,net.http_request,process.exec,repo.apply_patch,secrets.checkout" {
		t.Errorf("action types %s", got)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	root := t.TempDir()
	for name, cfg := range map[string]Config{
		"missing root":      {WorkspaceRoot: filepath.Join(root, "nope")},
		"file root":         {WorkspaceRoot: filepath.Join(root, "f")},
		"negative limit":    {WorkspaceRoot: root, MaxOutputBytes: -1},
		"bad cidr":          {WorkspaceRoot: root, AllowedPrivateCIDRs: []string{"10.0.0.0/33"}},
		"bad env allowlist": {WorkspaceRoot: root, EnvAllowlist: []string{"A=B"}},
	} {
		writeFile(t, root, "f", "")
		if _, err := New(cfg, nil, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The landlock profile is granted only when the launcher proves that the
// kernel enforces Landlock; otherwise the config is refused, never served
// with a weaker profile. The container profile includes it.
func TestLandlockProfileRefusedWhereUnavailable(t *testing.T) {
	for _, launcher := range [][]string{{}, {"false"}, {"/nonexistent/nomos", LauncherCommand}, {"echo", "9"}} {
		for _, profile := range []string{"landlock", "container"} {
			_, err := newExecutor(Config{WorkspaceRoot: t.TempDir(), SandboxProfile: profile, Launcher: launcher}, nil, nil,
				testHooks{probeContainer: func() error { return nil }})
			if err == nil || !strings.Contains(err.Error(), "landlock") {
				t.Errorf("%s with launcher %q: err = %v", profile, launcher, err)
			}
		}
	}
}

func TestLandlockCapabilities(t *testing.T) {
	e := landlockExecutor(t)
	c := e.Capabilities()
	if c["sandbox_profile"] != "landlock" || c["landlock_abi"] != e.landlockABI {
		t.Errorf("capabilities %v", c)
	}
	if got := strings.Join(c["sandbox_profiles"].([]string), ","); got != "none,local,landlock" {
		t.Errorf("profiles %s", got)
	}
	g := strings.Join(c["sandbox_guarantees"].([]string), ",")
	for _, want := range []string{"exec_landlock_fs", "exec_landlock_tcp", "exec_git_hardening", "exec_rlimits"} {
		if !strings.Contains(g, want) {
			t.Errorf("guarantees %s lack %s", g, want)
		}
	}
}
