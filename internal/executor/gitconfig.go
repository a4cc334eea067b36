package executor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// commandConfigKeys are repository settings whose value git runs as a
// command, or that bring in settings from elsewhere. The hardened
// environment overrides the fixed names it can, but driver names (filter,
// diff, merge) are chosen by the repository, and a config file cannot be
// made unreadable to git: so a confined run is refused while the
// repository config holds any of these.
var commandConfigKeys = regexp.MustCompile(`^(` + strings.Join([]string{
	`core\.(fsmonitor|hookspath|pager|editor|sshcommand|askpass|gitproxy|alternaterefscommand|worktree)`,
	`pager\..+`, `alias\..+`, `diff\.external`, `diff\..+\.(command|textconv)`,
	`filter\..+\.(clean|smudge|process)`, `merge\..+\.driver`, `(diff|merge)tool\..+\.(cmd|path)`,
	`gpg(\..+)?\.program`, `credential(\..+)?\.helper`, `sequence\.editor`, `uploadpack\.packobjectshook`,
	`remote\..+\.(uploadpack|receivepack|proxy)`, `include\.path`, `includeif\..+\.path`,
	`interactive\.difffilter`, `(browser|man)\..+\.(cmd|path)`, `web\.browser`, `sendemail\..+`, `trace2\..+`,
}, "|") + `)$`)

// harmlessFSMonitor are the core.fsmonitor values that run nothing.
var harmlessFSMonitor = []string{"false", "no", "off", "0", ""}

// gitConfigTimeout bounds the check's own git run.
const gitConfigTimeout = 5 * time.Second

// checkRepoConfig refuses a confined run while the workspace repository's
// config names a command git would run. It reads the config with git
// itself (no includes followed, nothing executed), in the hardened
// environment.
func (e *Executor) checkRepoConfig(env []string) *Error {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return nil // no git: nothing can read the config as git would
	}
	for _, name := range []string{"config", "config.worktree"} {
		if xerr := e.checkConfigFile(gitPath, filepath.Join(e.root, ".git", name), env); xerr != nil {
			return xerr
		}
	}
	return nil
}

func (e *Executor) checkConfigFile(gitPath, cfg string, env []string) *Error {
	if _, err := os.Lstat(cfg); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), gitConfigTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gitPath, "config", "--file", cfg, "--no-includes", "--null", "--list")
	cmd.Env, cmd.Dir = env, e.root
	out, err := cmd.Output()
	if err != nil {
		return fail(CodeSandboxViolation, "sandbox: the repository config cannot be checked: %v", err)
	}
	if key := firstCommandKey(out); key != "" {
		return fail(CodeSandboxViolation, "sandbox: the repository config sets %s, which makes git run a command or read other config; refused under the landlock sandbox", key)
	}
	return nil
}

// firstCommandKey scans `git config --null --list` output: entries are
// NUL-terminated, the key ends at the first newline.
func firstCommandKey(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	sc.Split(splitNUL)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), "\n")
		key = strings.ToLower(key)
		if !commandConfigKeys.MatchString(key) {
			continue
		}
		if key == "core.fsmonitor" && containsFold(harmlessFSMonitor, val) {
			continue
		}
		return key
	}
	return ""
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, strings.TrimSpace(s)) {
			return true
		}
	}
	return false
}

func splitNUL(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
