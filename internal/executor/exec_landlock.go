package executor

import (
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-nomos/nomos/policy"
)

// confinement is what the landlock launcher enforces for one run.
type confinement struct {
	spec     launchSpec
	specJSON string
	env      []string
	tmp      string   // private TMPDIR and HOME, removed after the run
	writeRel []string // exec_write_paths granted, for the evidence
}

func (b *confinement) cleanup() { _ = os.RemoveAll(b.tmp) }

// gitEnv turns off what git would run or read from configuration: system
// and global config, hooks, fsmonitor, pagers, editors, ssh, credential
// helpers, external diff, signature programs, protocols, and repository
// discovery (GIT_DIR is pinned to the workspace's own .git, so a nested
// .git an agent planted is never used). The GIT_CONFIG_COUNT entries rank
// above every config file. diff.external has no value that means "none"
// (an empty one is run as a command and breaks every diff): with no system
// or global config it can only come from the repository config, which
// checkRepoConfig refuses, or from GIT_EXTERNAL_DIFF, which hardenEnv does.
func gitEnv(root, home string) map[string]string {
	env := map[string]string{
		"HOME": home, "TMPDIR": home, "XDG_CONFIG_HOME": home,
		"GIT_DIR": filepath.Join(root, ".git"), "GIT_WORK_TREE": root,
		"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.DevNull, "GIT_ATTR_NOSYSTEM": "1",
		"GIT_PAGER": "cat", "PAGER": "cat", "GIT_EDITOR": ":", "EDITOR": ":", "VISUAL": ":",
		"GIT_SEQUENCE_EDITOR": ":", "GIT_ASKPASS": "", "SSH_ASKPASS": "", "GIT_TERMINAL_PROMPT": "0",
		"GIT_SSH_COMMAND": "false", "GIT_ALLOW_PROTOCOL": "file", "GIT_PROTOCOL_FROM_USER": "0",
		"GIT_OPTIONAL_LOCKS": "0", "GIT_NO_REPLACE_OBJECTS": "1", "GIT_NO_LAZY_FETCH": "1",
	}
	overrides := [][2]string{
		{"core.fsmonitor", "false"}, {"core.hooksPath", os.DevNull}, {"core.pager", "cat"},
		{"core.editor", ":"}, {"core.sshCommand", "false"}, {"core.askPass", ""},
		{"core.gitProxy", ""}, {"core.alternateRefsCommand", ""}, {"core.attributesFile", os.DevNull},
		{"credential.helper", ""}, {"log.showSignature", "false"},
		{"gpg.program", "false"}, {"gpg.ssh.program", "false"}, {"gpg.x509.program", "false"},
		{"sequence.editor", ":"}, {"protocol.allow", "never"}, {"uploadpack.packObjectsHook", ""},
	}
	env["GIT_CONFIG_COUNT"] = strconv.Itoa(len(overrides))
	for i, kv := range overrides {
		env["GIT_CONFIG_KEY_"+strconv.Itoa(i)] = kv[0]
		env["GIT_CONFIG_VALUE_"+strconv.Itoa(i)] = kv[1]
	}
	return env
}

// landlockBox prepares the confinement of one run: the program resolved
// here (the child has no PATH to search), a private temporary directory,
// the hardened environment, the paths the child may read and write and the
// TCP ports it may connect to.
func (e *Executor) landlockBox(argv []string, dir string, env []string, ob policy.Obligations) (*confinement, *Error) {
	path, xerr := resolveProgram(argv[0])
	if xerr != nil {
		return nil, xerr
	}
	write, rel, xerr := e.writePaths(ob.ExecWritePaths)
	if xerr != nil {
		return nil, xerr
	}
	tmp, err := os.MkdirTemp("", "nomos-exec-")
	if err == nil {
		// Landlock grants on the resolved path; the launcher refuses links.
		var real string
		if real, err = filepath.EvalSymlinks(tmp); err != nil {
			_ = os.RemoveAll(tmp)
		}
		tmp = real
	}
	if err != nil {
		return nil, fail(CodeExecutionError, "sandbox temporary directory: %v", err)
	}
	box := &confinement{tmp: tmp, writeRel: rel}
	if box.env, xerr = hardenEnv(env, gitEnv(e.root, tmp)); xerr != nil {
		box.cleanup()
		return nil, xerr
	}
	if xerr = e.checkRepoConfig(box.env); xerr != nil {
		box.cleanup()
		return nil, xerr
	}
	box.spec = launchSpec{
		ABI: e.landlockABI, Path: path, Argv: argv,
		Read:       slices.Concat(systemReadPaths, e.cfg.SandboxReadPaths, []string{e.root, absProgram(path, dir)}),
		Write:      append(append(slices.Clone(systemWritePaths), tmp), write...),
		ConnectTCP: connectPorts(ob.NetAllowlist),
		CPUSeconds: uint64(e.cfg.ExecTimeout/time.Second) + 1,
	}
	spec, _ := json.Marshal(box.spec)
	box.specJSON = string(spec)
	return box, nil
}

// resolveProgram finds argv[0] on this process's PATH, as process.exec
// always has; a name with a slash is taken relative to the working dir.
func resolveProgram(name string) (string, *Error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fail(CodeNotFound, "executable %q not found", name)
	}
	return p, nil
}

func absProgram(path, dir string) string {
	if filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// writePaths resolves each exec_write_paths entry to a directory inside
// the workspace. A symlink leading out, or into .git, is refused: Landlock
// grants on what a path resolves to.
func (e *Executor) writePaths(rels []string) ([]string, []string, *Error) {
	var abs []string
	for _, rel := range rels {
		if msg := policyWritePathProblem(rel); msg != "" {
			return nil, nil, fail(CodeSandboxViolation, "exec_write_paths %q: %s", rel, msg)
		}
		real, err := filepath.EvalSymlinks(filepath.Join(e.root, filepath.FromSlash(rel)))
		if err != nil {
			continue // nothing to write into yet; a missing directory is not granted
		}
		gitDir := filepath.Join(e.root, ".git")
		if !within(e.root, real) || real == e.root || real == gitDir || within(gitDir, real) {
			return nil, nil, fail(CodeSandboxViolation, "exec_write_paths %q leads outside the writable workspace", rel)
		}
		abs = append(abs, real)
	}
	return abs, slices.Clone(rels), nil
}

// policyWritePathProblem repeats the bundle check at run time.
func policyWritePathProblem(rel string) string {
	for _, seg := range strings.Split(rel, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.EqualFold(seg, ".git") {
			return "not a clean workspace directory outside .git"
		}
	}
	return ""
}

// hardenEnv adds the hardening to the child environment. A GIT_* key from
// the action or a lease is refused: it could undo the hardening.
func hardenEnv(env []string, hard map[string]string) ([]string, *Error) {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GIT_") {
			return nil, fail(CodeInvalidParams, "params: env key %q is reserved under the landlock sandbox", k)
		}
		vars[k] = v
	}
	maps.Copy(vars, hard)
	out := make([]string, 0, len(vars))
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		out = append(out, k+"="+vars[k])
	}
	return out, nil
}

// connectPorts are the TCP ports a child may connect to: with a
// net_allowlist obligation, the ports its entries name (443 and 80 for an
// entry without one); without it, none. Landlock filters ports, not hosts.
func connectPorts(allow []string) []uint16 {
	var ports []uint16
	for _, h := range allow {
		if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
			if p, err := strconv.ParseUint(h[i+1:], 10, 16); err == nil && p > 0 {
				ports = append(ports, uint16(p))
			}
			continue
		}
		ports = append(ports, 443, 80)
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// attachStatus gives the launcher its status pipe as fd 3.
func (b *confinement) attachStatus(cmd *exec.Cmd) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{w}
	return r, nil
}

// awaitExec reads the status pipe until the launcher execs the program
// (EOF, nothing said) or gives up (a message). A message means the program
// never ran unconfined: the run is refused.
func awaitExec(cmd *exec.Cmd, out *outputs, status *os.File) *Error {
	msg, _ := io.ReadAll(io.LimitReader(status, 4096))
	if len(msg) == 0 {
		return nil
	}
	abandon(cmd, out)
	xerr := fail(CodeExecutionError, "sandbox: the command could not be confined")
	if strings.Contains(string(msg), "exec: permission denied") {
		xerr = fail(CodeSandboxViolation, "sandbox: the program may not run in the landlock sandbox")
	}
	xerr.detail = string(msg)
	return xerr
}
