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
	{"hooks path", "[core]\n\thooksPath = HOOKS\n", "", []string{"status"}},
	{"pager", "[core]\n\tpager = MARK\n[pager]\n\tlog = MARK\n", "", []string{"log", "-1"}},
	{"signature program", "[log]\n\tshowSignature = true\n[gpg]\n\tprogram = MARK\n", "", []string{"log", "-1"}},
	{"external diff", "[diff]\n\texternal = MARK\n", "", []string{"diff"}},
	{"alias of a builtin", "[alias]\n\tstatus = !MARK\n", "", []string{"status"}},
	{"global config", "", "", []string{"status"}},
}

func TestGitEnvDisablesConfigCommands(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	for _, tt := range gitConfigAttacks {
		t.Run(tt.name, func(t *testing.T) {
			root, marks := t.TempDir(), t.TempDir()
			gitInit(t, root)
			writeFile(t, root, "src/main.go", "package main // changed\n")
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
			appendFile(t, filepath.Join(root, ".git/config"), cfg)
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
			if tt.name == "global config" {
				return
			}
			cmd = exec.Command("git", tt.argv...)
			cmd.Dir, cmd.Env = root, []string{"HOME=" + home, "GIT_CONFIG_NOSYSTEM=1", "GIT_PAGER=", "PATH=/usr/bin:/bin"}
			_, _ = cmd.CombinedOutput()
			if _, err := os.Stat(mark); err != nil && tt.name != "alias of a builtin" {
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
