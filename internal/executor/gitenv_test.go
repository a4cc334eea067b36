package executor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gitConfigAttacks are repository settings that make git run a command.
// Each command leaves a marker named after the attack; the hardened
// environment must keep every one of them from running, on its own,
// without Landlock's help.
var gitConfigAttacks = []struct {
	name, config, attrs string
	argv                []string
}{
	{"fsmonitor", "[core]\n\tfsmonitor = MARK\n", "", []string{"status"}},
	// add always writes the index, so post-index-change always runs where
	// hooks are honoured (status writes it only when a refresh changed
	// something, which made the control depend on timestamps).
	{"hooks path", "[core]\n\thooksPath = HOOKS\n", "", []string{"add", "src/main.go"}},
	{"alias of a builtin", "[alias]\n\tstatus = !MARK\n", "", []string{"status"}},
	{"global config", "", "", []string{"status"}},
}

func TestGitEnvDisablesConfigCommands(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	for _, tt := range gitConfigAttacks {
		t.Run(tt.name, func(t *testing.T) {
			marks := t.TempDir()
			mark := filepath.Join(marks, "ran")
			script := filepath.Join(marks, "mark.sh")
			if err := os.WriteFile(script, []byte("#!/bin/sh\ntouch "+mark+"\ncat\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			hooks := filepath.Join(marks, "hooks")
			for _, h := range []string{"post-index-change", "pre-auto-gc", "reference-transaction"} {
				writeFile(t, hooks, h, "#!/bin/sh\ntouch "+mark+"\n")
				_ = os.Chmod(filepath.Join(hooks, h), 0o755)
			}
			cfg := strings.NewReplacer("MARK", script, "HOOKS", hooks).Replace(tt.config)
			// Each run gets a repository of its own, so the control does not
			// find the work already done by the hardened run.
			repo := func() string {
				root := t.TempDir()
				gitInit(t, root)
				writeFile(t, root, "src/main.go", "package main // changed\n")
				appendFile(t, filepath.Join(root, ".git/config"), cfg)
				return root
			}
			root := repo()
			home := t.TempDir()
			// A global config the child must not read either.
			writeFile(t, home, ".gitconfig", "[core]\n\tfsmonitor = "+script+"\n")
			env, xerr := hardenEnv(nil, gitEnv(root, home))
			if xerr != nil {
				t.Fatal(xerr)
			}
			cmd := exec.Command("git", tt.argv...)
			cmd.Dir, cmd.Env = root, env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("git %v failed under the hardened environment: %v\n%s", tt.argv, err, out)
			}
			if _, err := os.Stat(mark); err == nil {
				t.Fatalf("git %v ran the configured command", tt.argv)
			}
			// The control: git without the hardening runs it.
			cmd = exec.Command("git", tt.argv...)
			cmd.Dir, cmd.Env = repo(), []string{"HOME=" + t.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "PATH=/usr/bin:/bin"}
			_, _ = cmd.CombinedOutput()
			if _, err := os.Stat(mark); err != nil && tt.name != "alias of a builtin" && tt.name != "global config" {
				t.Errorf("control: git %v without hardening did not run the command either; the test proves nothing", tt.argv)
			}
		})
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// An action cannot bring its own GIT_* variables into a confined child.
func TestHardenEnvRefusesGitKeys(t *testing.T) {
	for _, k := range []string{"GIT_DIR", "GIT_CONFIG_PARAMETERS", "GIT_EXTERNAL_DIFF", "GIT_SSH_COMMAND"} {
		if _, xerr := hardenEnv([]string{k + "=x"}, gitEnv("/w", "/h")); xerr == nil || xerr.Code != CodeInvalidParams {
			t.Errorf("%s: %v", k, xerr)
		}
	}
	env, _ := hardenEnv([]string{"HOME=/attacker", "LANG=C"}, gitEnv("/w", "/h"))
	if !containsString(env, "HOME=/h") || !containsString(env, "LANG=C") {
		t.Errorf("hardening must win over HOME and keep other keys: %v", env)
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Settings whose command the environment cannot switch off (drivers have
// names the repository chooses; includes bring in other files) make a
// confined run refuse, before anything starts.
func TestLandlockRefusesCommandConfig(t *testing.T) {
	configs := map[string]string{
		"diff.external":              "[diff]\n\texternal = sh -c 'touch pwned'\n",
		"diff.x.textconv":            "[diff \"x\"]\n\ttextconv = sh -c 'touch pwned'\n",
		"diff.x.command":             "[diff \"x\"]\n\tcommand = touch pwned\n",
		"filter.x.clean":             "[filter \"x\"]\n\tclean = touch pwned\n",
		"filter.x.process":           "[filter \"x\"]\n\tprocess = touch pwned\n",
		"merge.x.driver":             "[merge \"x\"]\n\tdriver = touch pwned\n",
		"include.path":               "[include]\n\tpath = ../src/more.cfg\n",
		"includeif.gitdir":           "[includeIf \"gitdir:/\"]\n\tpath = ../src/more.cfg\n",
		"core.fsmonitor":             "[core]\n\tfsmonitor = touch pwned\n",
		"core.sshcommand":            "[core]\n\tsshCommand = touch pwned\n",
		"alias.st":                   "[alias]\n\tst = !touch pwned\n",
		"gpg.program":                "[gpg]\n\tprogram = touch pwned\n",
		"credential.helper":          "[credential]\n\thelper = !touch pwned\n",
		"uploadpack.packobjectshook": "[uploadpack]\n\tpackObjectsHook = touch pwned\n",
	}
	for key, cfg := range configs {
		t.Run(key, func(t *testing.T) {
			e := landlockExecutor(t)
			writeFile(t, e.root, ".gitattributes", "* diff=x filter=x merge=x\n")
			appendFile(t, filepath.Join(e.root, ".git/config"), cfg)
			_, xerr := execute(t, e, execAction(t, map[string]any{"argv": []string{"git", "diff"}}), landlockMode)
			wantError(t, xerr, CodeSandboxViolation)
			if !strings.Contains(xerr.Message, strings.ToLower(key)) {
				t.Errorf("message does not name the setting: %s", xerr.Message)
			}
		})
	}
	e := landlockExecutor(t)
	appendFile(t, filepath.Join(e.root, ".git/config"), "[core]\n\tfsmonitor = false\n[user]\n\tname = x\n")
	mustRun(t, e, execAction(t, map[string]any{"argv": []string{"git", "status"}}), landlockMode)
}
